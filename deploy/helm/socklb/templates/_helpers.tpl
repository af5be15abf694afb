{{/* The name of every object of a release: "socklb" for a release named socklb. */}}
{{- define "socklb.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "socklb.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "socklb.labels" -}}
{{ include "socklb.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/part-of: socklb
{{- end -}}

{{- define "socklb.serviceAccountName" -}}
{{- default (include "socklb.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "socklb.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The agent's flags: the chart's own, then .Values.extraArgs. */}}
{{- define "socklb.args" -}}
- agent
- --log-level={{ .Values.logLevel }}
- --bpffs=/sys/fs/bpf/socklb
- --cgroup=/run/socklb/cgroupv2
- --metrics-address={{ .Values.metrics.address | default "$(HOST_IP)" }}:{{ .Values.metrics.port }}
- --healthz-address=0.0.0.0:{{ .Values.healthz.port }}
{{- with .Values.mapSizeServices }}
- --map-size-services={{ int64 . }}
{{- end }}
{{- with .Values.devices }}
- --devices={{ join "," . }}
{{- end }}
{{- with .Values.externalIPAllow }}
- --external-ip-allow={{ join "," . }}
{{- end }}
{{- with .Values.nodePortAddresses }}
- --nodeport-addresses={{ join "," . }}
{{- end }}
{{- with .Values.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end -}}
