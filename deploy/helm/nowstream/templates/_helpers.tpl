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
the chart renders from servicenow.credentials. Mounted in the fetcher only.
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

{{/*
Where a stage's secret files are mounted; NOWSTREAM_SECRETS_DIR names it, and the stage reads
each file there as the `*_file` key its name stands for (docs/deployment.md, "Secrets").
*/}}
{{- define "nowstream.secretsDir" -}}
/run/secrets/nowstream
{{- end }}

{{/*
The Secrets a stage may read, as sources of one projected volume; empty when it reads none.
Each file's name is the NOWSTREAM__… variable whose `_FILE` key it sets. Called with
(dict "root" $ "stage" "<stage>"). Only the fetcher reads ServiceNow credentials and only the
sink the SEI API key; Kafka credentials go to every stage, since each talks to Kafka.
*/}}
{{- define "nowstream.secretSources" -}}
{{- $root := .root }}
{{- if eq .stage "fetcher" }}
- secret:
    name: {{ include "nowstream.servicenowSecretName" $root }}
{{- end }}
{{- if eq .stage "sink" }}
- secret:
    name: {{ include "nowstream.seiSecretName" $root }}
    items:
      - key: {{ include "nowstream.seiSecretKey" $root }}
        path: NOWSTREAM__SEI__API_KEY
{{- end }}
{{- with $root.Values.kafka.existingSecret }}
- secret:
    name: {{ . }}
{{- end }}
{{- end }}

{{/*
The rendered Secrets a stage reads, for its checksum annotation: a rotated SEI key restarts the
sink only.
*/}}
{{- define "nowstream.stageSecretsChecksum" -}}
{{- $root := .root }}
{{- if eq .stage "fetcher" }}
{{- include (print $root.Template.BasePath "/secret-servicenow.yaml") $root | sha256sum }}
{{- else if eq .stage "sink" }}
{{- include (print $root.Template.BasePath "/secret-sei.yaml") $root | sha256sum }}
{{- else }}
{{- "" | sha256sum }}
{{- end }}
{{- end }}

{{/*
"true" when a value counts as set: present and not the empty string. 0 is set (maxUnavailable: 0
is a real budget), which a plain `if` would miss.
*/}}
{{- define "nowstream.isSet" -}}
{{- if and (not (kindIs "invalid" .)) (ne (toString .) "") }}true{{ end }}
{{- end }}

{{/*
Refuses values that would install a release whose stages stop at start-up (no credentials) or
whose objects contradict themselves (two credential sources, min above max, a PDB with both
bounds), instead of rendering it. values.schema.json already typed every value; these are the
checks that span values. Every problem is reported at once, each as
"nowstream: <what is wrong>: set X or Y". Included once, by templates/validate.yaml.
Only what takes effect is checked: the bounds of an autoscaler that is on, the PDB of a stage
that renders one.
*/}}
{{- define "nowstream.validate" -}}
{{- $problems := list }}
{{- if and .Values.sei.apiKey .Values.sei.existingSecret }}
{{- $problems = append $problems "nowstream: sei.apiKey and sei.existingSecret are both set, and the chart would use only one: set sei.apiKey or sei.existingSecret, not both" }}
{{- else if not (or .Values.sei.apiKey .Values.sei.existingSecret) }}
{{- $problems = append $problems "nowstream: no SEI API key, so every stage stops at start-up: set sei.apiKey or sei.existingSecret" }}
{{- end }}
{{- if and .Values.servicenow.credentials .Values.servicenow.existingSecret }}
{{- $problems = append $problems "nowstream: servicenow.credentials and servicenow.existingSecret are both set, and the chart would use only one: set servicenow.credentials or servicenow.existingSecret, not both" }}
{{- else if not (or .Values.servicenow.credentials .Values.servicenow.existingSecret) }}
{{- $problems = append $problems "nowstream: no ServiceNow credentials, so every stage stops at start-up: set servicenow.credentials or servicenow.existingSecret" }}
{{- end }}
{{- if not .Values.servicenow.existingSecret }}
{{- range $index, $credential := .Values.servicenow.credentials }}
{{- if not (or $credential.password $credential.clientSecret) }}
{{- $problems = append $problems (printf "nowstream: servicenow.credentials[%d] has neither a password nor a clientSecret: set servicenow.credentials[%d].password or servicenow.credentials[%d].clientSecret" $index $index $index) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $name := splitList " " (include "nowstream.stages" $) }}
{{- $stage := index $.Values $name }}
{{- if $stage.enabled }}
{{- if and $stage.autoscaling.enabled (not $stage.keda.enabled) (gt (int $stage.autoscaling.minReplicas) (int $stage.autoscaling.maxReplicas)) }}
{{- $problems = append $problems (printf "nowstream: %s.autoscaling.minReplicas (%d) is above %s.autoscaling.maxReplicas (%d): set %s.autoscaling.minReplicas or %s.autoscaling.maxReplicas so that min <= max" $name (int $stage.autoscaling.minReplicas) $name (int $stage.autoscaling.maxReplicas) $name $name) }}
{{- end }}
{{- if and $stage.keda.enabled (gt (int $stage.keda.minReplicaCount) (int $stage.keda.maxReplicaCount)) }}
{{- $problems = append $problems (printf "nowstream: %s.keda.minReplicaCount (%d) is above %s.keda.maxReplicaCount (%d): set %s.keda.minReplicaCount or %s.keda.maxReplicaCount so that min <= max" $name (int $stage.keda.minReplicaCount) $name (int $stage.keda.maxReplicaCount) $name $name) }}
{{- end }}
{{- if and $stage.pdb.enabled (include "nowstream.isSet" $stage.pdb.minAvailable) (include "nowstream.isSet" $stage.pdb.maxUnavailable) }}
{{- $problems = append $problems (printf "nowstream: %s.pdb.minAvailable and %s.pdb.maxUnavailable are both set, and a PodDisruptionBudget takes only one: set %s.pdb.minAvailable or %s.pdb.maxUnavailable, not both" $name $name $name $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- with $problems }}
{{- fail (join "\n" .) }}
{{- end }}
{{- end }}
