{{- define "videogen.name" -}}videogen-operator{{- end -}}
{{- define "videogen.labels" -}}
app.kubernetes.io/name: videogen-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "videogen.selector" -}}
app.kubernetes.io/name: videogen-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "videogen.image" -}}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) -}}
{{- end -}}
