{{/* Names, labels and shared snippets. */}}

{{- define "zasperhub.fullname" -}}
{{- if contains "zasperhub" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-zasperhub" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "zasperhub.name" -}}
{{- printf "%s-%s" (include "zasperhub.fullname" .root) .component -}}
{{- end -}}

{{/* Selector labels of one component: pass (dict "root" $ "component" "hub"). */}}
{{- define "zasperhub.selectorLabels" -}}
app.kubernetes.io/name: zasperhub
app.kubernetes.io/instance: {{ .root.Release.Name | quote }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "zasperhub.labels" -}}
{{ include "zasperhub.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | quote }}
{{- end -}}

{{- define "zasperhub.hubSecret" -}}{{ include "zasperhub.fullname" . }}-hub{{- end -}}
{{- define "zasperhub.s3Secret" -}}
{{- if .Values.storage.s3.existingSecret -}}{{ .Values.storage.s3.existingSecret }}{{- else -}}{{ include "zasperhub.fullname" . }}-s3{{- end -}}
{{- end -}}
{{- define "zasperhub.s3Endpoint" -}}
{{- if .Values.storage.s3.endpoint -}}{{ .Values.storage.s3.endpoint }}{{- else if .Values.storage.inCluster.enabled -}}http://{{ include "zasperhub.fullname" . }}-s3:8333{{- end -}}
{{- end -}}
{{- define "zasperhub.usesS3" -}}{{ if eq .Values.storage.type "s3" }}true{{ end }}{{- end -}}
{{- define "zasperhub.inClusterS3" -}}{{ if and (eq .Values.storage.type "s3") .Values.storage.inCluster.enabled }}true{{ end }}{{- end -}}

{{/*
A secret value: the one given in values if any, else the value already in
the cluster's Secret (upgrades keep it), else a freshly generated one.
Pass (dict "existing" $secretOrNil "key" "k" "value" "" "generate" "hex64|alnum32").
*/}}
{{- define "zasperhub.keepSecret" -}}
{{- if .value -}}
{{- .value | b64enc -}}
{{- else if and .existing .existing.data (index .existing.data .key) -}}
{{- index .existing.data .key -}}
{{- else if eq .generate "hex64" -}}
{{- randAlphaNum 64 | sha256sum | b64enc -}}
{{- else -}}
{{- randAlphaNum 32 | b64enc -}}
{{- end -}}
{{- end -}}

{{/* Pod security context shared by every component: non-root, default seccomp. */}}
{{- define "zasperhub.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "zasperhub.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Combinations the schema cannot express; fails the render with a message. */}}
{{- define "zasperhub.validate" -}}
{{- if and (eq .Values.storage.type "s3") (not .Values.storage.inCluster.enabled) (not .Values.storage.s3.existingSecret) (not .Values.storage.s3.accessKeyId) -}}
{{- fail "storage.s3: an external S3 store needs credentials: set storage.s3.existingSecret (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or storage.s3.accessKeyId/secretAccessKey" -}}
{{- end -}}
{{- if and (eq .Values.storage.type "s3") .Values.storage.s3.accessKeyId (not .Values.storage.s3.secretAccessKey) -}}
{{- fail "storage.s3.secretAccessKey is required with storage.s3.accessKeyId" -}}
{{- end -}}
{{- if and (eq .Values.auth.type "google") (not .Values.auth.google.clientId) -}}
{{- fail "auth.google.clientId is required with auth.type=google" -}}
{{- end -}}
{{- if and (eq .Values.auth.type "google") (not .Values.auth.google.existingSecret) (not .Values.auth.google.clientSecret) -}}
{{- fail "auth.google: set clientSecret or existingSecret (key client-secret)" -}}
{{- end -}}
{{- if and (eq .Values.auth.type "google") (not .Values.auth.google.callbackUrl) -}}
{{- fail "auth.google.callbackUrl is required (https://HOST/hub/oauth_callback)" -}}
{{- end -}}
{{- if and (eq .Values.database.type "postgresql") (not .Values.database.postgresql.existingSecret) (not .Values.database.postgresql.password) -}}
{{- fail "database.postgresql: set password or existingSecret (key password)" -}}
{{- end -}}
{{- end -}}
