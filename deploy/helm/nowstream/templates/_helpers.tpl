{{/*
The stages, in pipeline order. Each is a Deployment running the binary nowstream-<stage>, with
its own values block (.Values.<stage>), HorizontalPodAutoscaler, PodDisruptionBudget and
optional KEDA ScaledObject.
*/}}
{{- define "nowstream.stages" -}}
fetcher normalizer sink
{{- end }}

{{- define "nowstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Release-qualified name; object names of a stage append "-<stage>".
*/}}
{{- define "nowstream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "nowstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of chart-wide objects; called with the root context.
*/}}
{{- define "nowstream.labels" -}}
helm.sh/chart: {{ include "nowstream.chart" . }}
app.kubernetes.io/name: {{ include "nowstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nowstream
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Stage helpers are called with (dict "root" $ "stage" "<stage>").
*/}}
{{- define "nowstream.stageName" -}}
{{- printf "%s-%s" (include "nowstream.fullname" .root) .stage | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nowstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nowstream.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .stage }}
{{- end }}

{{- define "nowstream.stageLabels" -}}
{{ include "nowstream.labels" .root }}
app.kubernetes.io/component: {{ .stage }}
{{- end }}

{{- define "nowstream.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "nowstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nowstream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "nowstream.configMapName" -}}
{{- printf "%s-config" (include "nowstream.fullname" .) }}
{{- end }}

{{/*
The Secret whose keys are NOWSTREAM__… variable names: servicenow.existingSecret, or the one
the chart renders from servicenow.credentials.
*/}}
{{- define "nowstream.servicenowSecretName" -}}
{{- if .Values.servicenow.existingSecret }}
{{- .Values.servicenow.existingSecret }}
{{- else }}
{{- printf "%s-servicenow" (include "nowstream.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The Secret and key holding the SEI API key: sei.existingSecret and sei.existingSecretKey, or the
one the chart renders from sei.apiKey.
*/}}
{{- define "nowstream.seiSecretName" -}}
{{- if .Values.sei.existingSecret }}
{{- .Values.sei.existingSecret }}
{{- else }}
{{- printf "%s-sei" (include "nowstream.fullname" .) }}
{{- end }}
{{- end }}

{{- define "nowstream.seiSecretKey" -}}
{{- if .Values.sei.existingSecret }}
{{- .Values.sei.existingSecretKey }}
{{- else }}
{{- "api-key" }}
{{- end }}
{{- end }}
