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

{{/* The bundled Redis' host and port (no secret in it). */}}
{{- define "influence.redisHost" -}}
{{ include "influence.fullname" . }}-redis:6379
{{- end -}}

{{/* The Secret holding the Redis connection ("connection": HOST:PORT,password=...; "cluster-url": redis://...). */}}
{{- define "influence.redisSecret" -}}
{{- if and (not .Values.redis.bundled) .Values.redis.external.existingSecret -}}
{{ .Values.redis.external.existingSecret }}
{{- else -}}
{{ include "influence.fullname" . }}-redis
{{- end -}}
{{- end -}}

{{- define "influence.storeSecret" -}}
{{- if .Values.store.existingSecret -}}
{{ .Values.store.existingSecret }}
{{- else -}}
{{ include "influence.fullname" . }}-store
{{- end -}}
{{- end -}}

{{/* Settings shared by silos and the client Job: the blob store, the cluster id, TLS. */}}
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

{{/* Where silos and the client Job mount the TLS Secret. */}}
{{- define "influence.tlsDir" -}}/etc/influence/tls{{- end -}}

{{- define "influence.tlsVolume" -}}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ required "tls.secretName is required when tls.enabled (a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt)" .Values.tls.secretName }}
{{- end }}
{{- end -}}

{{- define "influence.tlsMount" -}}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: {{ include "influence.tlsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

