{{/* The workload's name. */}}
{{- define "keyless.name" -}}
{{- default .Release.Name .Values.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The service account's name. */}}
{{- define "keyless.serviceAccountName" -}}
{{- default (include "keyless.name" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Labels of the pod (and the Deployment's selector). */}}
{{- define "keyless.podLabels" -}}
app.kubernetes.io/name: {{ include "keyless.name" . }}
app.kubernetes.io/part-of: keyless
{{- end -}}

{{/* Labels of every object. */}}
{{- define "keyless.labels" -}}
{{ include "keyless.podLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The values this chart cannot do without, checked once. */}}
{{- define "keyless.validate" -}}
{{- if not (has .Values.direction (list "gcpToAws" "awsToGcp")) -}}
{{- fail (printf "direction must be gcpToAws or awsToGcp, not %q" .Values.direction) -}}
{{- end -}}
{{- if not (has .Values.kind (list "Deployment" "Job")) -}}
{{- fail (printf "kind must be Deployment or Job, not %q" .Values.kind) -}}
{{- end -}}
{{- if eq .Values.direction "gcpToAws" -}}
{{- if not (has .Values.delivery (list "ecs" "tokenFile")) -}}
{{- fail (printf "delivery must be ecs or tokenFile, not %q" .Values.delivery) -}}
{{- end -}}
{{- $_ := required "aws.roleArn is required for direction gcpToAws" .Values.aws.roleArn -}}
{{- else -}}
{{- $_ := required "gcp.audience is required for direction awsToGcp" .Values.gcp.audience -}}
{{- end -}}
{{- $_ := required "app.image is required" .Values.app.image -}}
{{- end -}}

{{/* The ConfigMap holding the token-file sidecar's keyless.toml. */}}
{{- define "keyless.configName" -}}
{{- printf "%s-keyless" (include "keyless.name" .) -}}
{{- end -}}

{{/* Does this release use the shared in-memory volume? */}}
{{- define "keyless.sharesFiles" -}}
{{- if eq .Values.direction "gcpToAws" }}true{{ end -}}
{{- end -}}
