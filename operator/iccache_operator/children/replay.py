"""The replay CronJob: same image and settings as the router, off-peak."""

from __future__ import annotations

from typing import Any

from iccache_operator import api
from iccache_operator.children.common import Owner
from iccache_operator.children.router import sidecar_pod

COMPONENT = "replay"
TERMINATION_LOG = "/dev/termination-log"


def replay_cronjob(
    owner: Owner, spec: api.InContextCacheSpec, image: str, config_hash_value: str
) -> dict[str, Any]:
    r = spec.replay
    # Budgets and the load threshold travel in the rendered settings file; the summary
    # goes to the termination message, where the operator reads it into status.replay.
    args = ["replay", "--summary-file", TERMINATION_LOG]
    pod = sidecar_pod(owner, spec, image, args, COMPONENT, config_hash_value)
    pod["spec"]["restartPolicy"] = "Never"
    pod["spec"]["containers"][0]["terminationMessagePath"] = TERMINATION_LOG
    pod["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    job_spec: dict[str, Any] = {
        "schedule": r.schedule.strip(),
        "suspend": r.suspend,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 600,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "metadata": {"labels": owner.labels(COMPONENT)},
            "spec": {
                "activeDeadlineSeconds": r.deadline_seconds,
                "backoffLimit": 0,
                "template": pod,
            },
        },
    }
    if r.time_zone:
        job_spec["timeZone"] = r.time_zone
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": owner.metadata("replay", COMPONENT),
        "spec": job_spec,
    }
