{{/* The release's full name, at most 63 characters. */}}
{{- define "iccache.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "iccache.selectorLabels" -}}
app.kubernetes.io/name: iccache-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "iccache.labels" -}}
{{ include "iccache.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: iccache
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "iccache.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "iccache.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "iccache.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "iccache.sidecarImage" -}}
{{- printf "%s:%s" .Values.sidecarImage.repository (default .Chart.AppVersion .Values.sidecarImage.tag) -}}
{{- end -}}

{{/* The namespaces watched with scope "namespaced", as a list. */}}
{{- define "iccache.watchNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- toYaml (uniq .Values.watchNamespaces) -}}
{{- else -}}
{{- toYaml (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}
