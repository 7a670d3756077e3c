{{- define "influence.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "influence.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "influence.siloSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: silo
{{- end -}}

{{- define "influence.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "influence.redisAddress" -}}
{{- if .Values.redis.bundled -}}
{{ include "influence.fullname" . }}-redis:6379
{{- else -}}
{{- required "redis.external.address is required when redis.bundled is false" .Values.redis.external.address -}}
{{- end -}}
{{- end -}}

{{- define "influence.storeSecret" -}}
{{- if .Values.store.existingSecret -}}
{{ .Values.store.existingSecret }}
{{- else -}}
{{ include "influence.fullname" . }}-store
{{- end -}}
{{- end -}}

{{/* Settings shared by silos and the client Job: the blob store and the cluster id. */}}
{{- define "influence.storeEnv" -}}
- name: Store__ConnectionString
  valueFrom:
    secretKeyRef:
      name: {{ include "influence.storeSecret" . }}
      key: connection-string
- name: INFLUENCE_BLOB_CONNECTION_STRING
  valueFrom:
    secretKeyRef:
      name: {{ include "influence.storeSecret" . }}
      key: connection-string
- name: INFLUENCE_CLUSTER_ID
  value: {{ .Values.silo.clusterId | quote }}
{{- end -}}
