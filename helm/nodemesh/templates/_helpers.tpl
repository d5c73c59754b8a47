{{/* SPDX-License-Identifier: Apache-2.0 */}}
{{/* Names, labels and the agent's config file. */}}

{{- define "nodemesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nodemesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "nodemesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the agent pods; never change them after install. */}}
{{- define "nodemesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nodemesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "nodemesh.labels" -}}
helm.sh/chart: {{ include "nodemesh.chart" . }}
{{ include "nodemesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: node-agent
{{- end -}}

{{- define "nodemesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "nodemesh.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "nodemesh.priorityClassName" -}}
{{- if .Values.priorityClass.create -}}
{{- default (include "nodemesh.fullname" .) .Values.priorityClass.name -}}
{{- else -}}
{{- .Values.priorityClassName -}}
{{- end -}}
{{- end -}}

{{- define "nodemesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "nodemesh.cgroupMountPath" -}}
{{- default .Values.cgroup.hostPath .Values.cgroup.mountPath -}}
{{- end -}}

{{/*
The agent's config file: the cluster-file format of docs/config.md with only
the fields that are not discovered from the API server. The agent's parser is
strict (an unknown field stops the load), so only documented fields go here,
and limits left at 0 (= derived) are left out.
*/}}
{{- define "nodemesh.config" -}}
{{- $m := .Values.mesh -}}
{{- $limits := dict -}}
{{- range $k, $v := $m.limits -}}
{{- if $v -}}{{- $_ := set $limits $k (int64 $v) -}}{{- end -}}
{{- end -}}
{{- $mesh := dict "outboundPort" (int64 $m.outboundPort) "inboundPort" (int64 $m.inboundPort) "adminPort" (int64 $m.adminPort) "failMode" $m.failMode "rootNamespace" $m.rootNamespace "healthPort" (int64 .Values.ports.health) -}}
{{- if $limits -}}{{- $_ := set $mesh "limits" $limits -}}{{- end -}}
{{- $tp := $m.tunnelPool -}}
{{- $_ := set $mesh "kernelPath" $m.kernelPath -}}
{{- $_ := set $mesh "relay" $m.relay -}}
{{- $_ := set $mesh "ktls" $m.ktls -}}
{{- $_ := set $mesh "tlsRecords" $m.tlsRecords -}}
{{- $_ := set $mesh "tlsEcMethods" $m.tlsEcMethods -}}
{{- $_ := set $mesh "busyPoll" (int64 $m.busyPoll) -}}
{{- $_ := set $mesh "tunnelPool" (dict "size" (int64 $tp.size) "idleTimeoutMs" (int64 $tp.idleTimeoutMs) "maxConnections" (int64 $tp.maxConnections)) -}}
{{- $cfg := dict "trustDomain" $m.trustDomain "certDir" .Values.certs.mountPath "mesh" $mesh "policy" (dict "applyToExisting" .Values.policy.applyToExisting) -}}
{{- toPrettyJson $cfg -}}
{{- end -}}

{{/* Whether to render the AuthorizationPolicy CRD. */}}
{{- define "nodemesh.installAuthzCRD" -}}
{{- $v := .Values.crds.authorizationPolicy -}}
{{- if eq (toString $v) "auto" -}}
{{- if not (.Capabilities.APIVersions.Has "security.istio.io/v1") -}}true{{- end -}}
{{- else if eq (toString $v) "true" -}}true{{- end -}}
{{- end -}}
