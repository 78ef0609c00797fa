{{/* Names and labels. */}}
{{- define "kop.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kop.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kop.labels" -}}
{{ include "kop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "kop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kop.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kop.tlsSecret" -}}
{{- default (printf "%s-tls" (include "kop.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{- define "kop.clustersSecret" -}}
{{- default (printf "%s-clusters" (include "kop.fullname" .)) .Values.clusters.existingSecret -}}
{{- end -}}

{{- define "kop.rolesConfigMap" -}}
{{- default (printf "%s-roles" (include "kop.fullname" .)) .Values.roles.existingConfigMap -}}
{{- end -}}

{{- define "kop.caConfigMap" -}}
{{- default (printf "%s-oidc-ca" (include "kop.fullname" .)) .Values.oidc.existingCaConfigMap -}}
{{- end -}}

{{- define "kop.secretNamespace" -}}
{{- default .Release.Namespace .Values.management.secretNamespace -}}
{{- end -}}

{{- define "kop.hasClusters" -}}
{{- if or .Values.clusters.existingSecret .Values.clusters.config }}true{{ end -}}
{{- end -}}

{{- define "kop.hasRoles" -}}
{{- if or .Values.roles.existingConfigMap .Values.roles.config }}true{{ end -}}
{{- end -}}

{{- define "kop.hasAuthn" -}}
{{- if or .Values.authentication.existingConfigMap .Values.authentication.config }}true{{ end -}}
{{- end -}}

{{- define "kop.authnConfigMap" -}}
{{- default (printf "%s-authentication" (include "kop.fullname" .)) .Values.authentication.existingConfigMap -}}
{{- end -}}

{{- define "kop.hasCa" -}}
{{- if or .Values.oidc.existingCaConfigMap .Values.oidc.caPem }}true{{ end -}}
{{- end -}}

{{/* The proxy's flags: derived from the structured values, then .Values.flags over them. */}}
{{- define "kop.args" -}}
{{- $f := dict -}}
{{- $_ := set $f "bind-address" "0.0.0.0" -}}
{{- $_ := set $f "secure-port" .Values.securePort -}}
{{- $_ := set $f "readiness-probe-port" .Values.probePort -}}
{{- if include "kop.hasAuthn" . -}}
{{- $_ := set $f "authentication-config" "/etc/kube-oidc-proxy/authentication/authentication.yaml" -}}
{{- else -}}
{{- $_ := set $f "oidc-issuer-url" .Values.oidc.issuerUrl -}}
{{- $_ := set $f "oidc-client-id" .Values.oidc.clientId -}}
{{- if include "kop.hasCa" . }}{{ $_ := set $f "oidc-ca-file" "/etc/kube-oidc-proxy/oidc-ca/ca.crt" }}{{ end -}}
{{- end -}}
{{- $_ := set $f "tls-cert-file" "/etc/kube-oidc-proxy/tls/tls.crt" -}}
{{- $_ := set $f "tls-private-key-file" "/etc/kube-oidc-proxy/tls/tls.key" -}}
{{- if include "kop.hasClusters" . }}{{ $_ := set $f "clusters-config" "/etc/kube-oidc-proxy/clusters/clusters.yaml" }}{{ end -}}
{{- if include "kop.hasRoles" . }}{{ $_ := set $f "role-config" "/etc/kube-oidc-proxy/roles/roles.yaml" }}{{ end -}}
{{- $_ := set $f "shutdown-grace-period" (printf "%ds" (int .Values.shutdownGracePeriodSeconds)) -}}
{{- if .Values.management.enabled -}}
{{- $_ := set $f "secret-name" .Values.management.secretName -}}
{{- $_ := set $f "secret-namespace" (include "kop.secretNamespace" .) -}}
{{- else -}}
{{- $_ := set $f "management-kubeconfig" "" -}}
{{- end -}}
{{- with .Values.audit -}}
{{- if .webhookServer }}{{ $_ := set $f "audit-webhook-server" .webhookServer }}{{ end -}}
{{- if .existingSecret -}}
{{- range $key, $flag := dict "token" "audit-webhook-token-file" "ca.crt" "audit-webhook-ca-file" "tls.crt" "audit-webhook-client-cert-file" "tls.key" "audit-webhook-client-key-file" -}}
{{- if has $key $.Values.audit.keys }}{{ $_ := set $f $flag (printf "/etc/kube-oidc-proxy/audit/%s" $key) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := .Values.flags -}}
{{- if not (kindIs "invalid" $v) }}{{ $_ := set $f $k $v }}{{ end -}}
{{- end -}}
{{- range $k, $v := $f -}}
{{- if kindIs "slice" $v }}
{{- range $v }}
- {{ printf "--%s=%v" $k (include "kop.scalar" .) | quote }}
{{- end }}
{{- else }}
- {{ printf "--%s=%v" $k (include "kop.scalar" $v) | quote }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* Whole numbers print as integers (YAML numbers arrive as floats). */}}
{{- define "kop.scalar" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- end -}}
