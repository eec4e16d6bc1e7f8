{{/* Names and labels shared by every template. */}}

{{- define "dockyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name; components append -api, -worker, -migrate (63-char DNS limit). */}}
{{- define "dockyard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains (include "dockyard.name" .) .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "dockyard.name" .) | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dockyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dockyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dockyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dockyard.labels" -}}
helm.sh/chart: {{ include "dockyard.chart" . }}
{{ include "dockyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "dockyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The Secret holding DOCKYARD_DATABASE_URL and DOCKYARD_REDIS_URL. */}}
{{- define "dockyard.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-env" (include "dockyard.fullname" .)) -}}
{{- end -}}

{{/* The database and Redis URLs, from whichever Secret holds them (the migrations Job passes its
     own Secret: it runs before the release's resources exist). */}}
{{- define "dockyard.urlEnv" -}}
- name: DOCKYARD_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .root.Values.secrets.databaseUrlKey }}
- name: DOCKYARD_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .root.Values.secrets.redisUrlKey }}
{{- end -}}

{{/* Settings common to every container: the ConfigMap, the URLs, the user's extra variables. */}}
{{- define "dockyard.env" -}}
{{- include "dockyard.urlEnv" (dict "root" . "secretName" (include "dockyard.secretName" .)) }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod-level fields shared by the API, workers and migrations. */}}
{{- define "dockyard.podSpecCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.serviceAccount.name }}
serviceAccountName: {{ .Values.serviceAccount.name }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Writable scratch space under a read-only root filesystem. */}}
{{- define "dockyard.volumes" -}}
volumes:
  - name: tmp
    emptyDir: {}
  - name: data
    emptyDir: {}
{{- end -}}

{{- define "dockyard.volumeMounts" -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  - name: data
    mountPath: /app/data
{{- end -}}

{{/* prometheus.io/* (metrics.podAnnotations) plus podAnnotations, as a YAML map or nothing. */}}
{{- define "dockyard.podAnnotations" -}}
{{- $annotations := dict -}}
{{- if .root.Values.metrics.podAnnotations -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" -}}
{{- $_ := set $annotations "prometheus.io/port" (toString .port) -}}
{{- end -}}
{{- $annotations = merge (deepCopy (.root.Values.podAnnotations | default dict)) $annotations -}}
{{- with $annotations }}{{ toYaml . }}{{ end -}}
{{- end -}}
