# e2e/faults.sh — faults in the real ring, sourced by e2e/tests.sh after its other checks (it
# uses their helpers: ok, bad, k, token, TOK, OUT, BG). What each fault must look like to a
# user is written in README.md, "Operations: when something fails". Each fault is undone before
# the next: the ring is whole again when this file ends.

here_faults="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
alive() { kill -0 "$1" 2>/dev/null; }
# gone PID SECONDS: true once PID has exited, false if it still runs after SECONDS.
gone() { local i; for ((i = 0; i < $2 * 10; i++)); do alive "$1" || return 0; sleep 0.1; done; return 1; }
code_of() { # token url: the HTTP status of a GET
  curl -s -o /dev/null -w '%{http_code}' --max-time 40 --cacert "$KOP_CA" -H "Authorization: Bearer $1" "$2"
}

# A third proxy for these tests, sending audit events to a webhook the tests can take down.
SINK_PORT=$(free_port) P3_PORT=$(free_port) P3_PROBE=$(free_port)
SINK_OUT=$OUT/audit-sink.jsonl
P3=https://127.0.0.1:$P3_PORT
start_sink() {
  python3 "$here_faults/audit-sink.py" "$SINK_PORT" "$KOP_E2E_DIR/pki/proxy.crt" "$KOP_E2E_DIR/pki/proxy.key" "$SINK_OUT" &
  SINK_PID=$!
  BG+=("$SINK_PID")
  for _ in $(seq 1 50); do curl -s -o /dev/null --cacert "$KOP_CA" "https://127.0.0.1:$SINK_PORT/" && break; sleep 0.1; done
}
start_sink
# The queue holds 20 events: the outage below sends 40, so both halves of the rule are seen.
"$KOP_PROXY_BIN" --bind-address=127.0.0.1 --secure-port="$P3_PORT" --readiness-probe-port="$P3_PROBE" \
  --clusters-config="$KOP_E2E_DIR/clusters.yaml" --management-kubeconfig= \
  --oidc-issuer-url="$KOP_ISSUER" --oidc-client-id=kube --oidc-ca-file="$KOP_CA" \
  --oidc-username-claim=preferred_username --oidc-groups-claim=groups \
  --tls-cert-file="$KOP_E2E_DIR/pki/proxy.crt" --tls-private-key-file="$KOP_E2E_DIR/pki/proxy.key" \
  --audit-webhook-server="https://127.0.0.1:$SINK_PORT" --audit-webhook-ca-file="$KOP_CA" \
  --audit-webhook-queue-size=20 --shutdown-grace-period=5s \
  >"$OUT/p3-access.log" 2>"$OUT/p3.log" &
P3_PID=$!
BG+=("$P3_PID")
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$P3_PROBE/ready" && break; sleep 0.1; done
p3_metric() { curl -s "http://127.0.0.1:$P3_PROBE/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
delivered() { local n; n=$(grep -c "$1" "$SINK_OUT" 2>/dev/null); echo "${n:-0}"; }

echo "== faults: the audit webhook and Keycloak down for 60 s (at the same time)"
code_of "${TOK[ann]}" "$P3/k8s/api/v1/namespaces/dev/configmaps/audit-before" >/dev/null
for _ in $(seq 1 50); do [ "$(delivered audit-before)" -gt 0 ] && break; sleep 0.1; done
if [ "$(delivered audit-before)" -gt 0 ]; then ok "audit events reach the webhook"; else bad "audit events reach the webhook" "$(tail -3 "$OUT/p3.log")"; fi
unused="$(token ann)" # issued now, first used while Keycloak is down
kill "$SINK_PID"; wait "$SINK_PID" 2>/dev/null
kc_java="$(pgrep -P "$(cat "$KOP_E2E_DIR/run/keycloak.pid")" | head -1)"
kill -STOP "$kc_java"
down_at=$(date +%s)
t0=$(date +%s%N)
codes=()
for i in $(seq 1 40); do codes+=("$(code_of "${TOK[ann]}" "$P3/k8s/api/v1/namespaces/dev/configmaps/audit-outage-$i")"); done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ "$(printf '%s\n' "${codes[@]}" | sort -u)" = 404 ] && [ "$ms" -lt 20000 ]; then
  ok "webhook down: 40 requests answered by the cluster, none waited on the webhook (${ms} ms in all)"
else
  bad "webhook down: 40 requests answered by the cluster, none waited on the webhook" "${ms} ms; codes: ${codes[*]}"
fi
expect_ok "Keycloak down: a token it issued before works (keys are cached)" "200" \
  code_of "$unused" "$KOP_PROXY_URL/k8s/api/v1/namespaces/dev/pods"
expect_ok "Keycloak down: /ready stays 200 once keys were loaded" "200" \
  curl -s -o /dev/null -w '%{http_code}' "$KOP_PROBE_URL/ready"
bogus="$(printf '{"alg":"RS256","kid":"fault-unknown","typ":"JWT"}' | base64 -w0 | tr '+/' '-_' | tr -d '=').${unused#*.}"
t1=$(date +%s)
expect_ok "Keycloak down: a token with an unknown kid is refused, not hung on" "401" \
  code_of "$bogus" "$KOP_PROXY_URL/k8s/api/v1/namespaces/dev/pods"
echo "      (refused after $(( $(date +%s) - t1 )) s: held for the refetch window, then the fetch timed out)"
left=$(( down_at + 60 - $(date +%s) ))
[ "$left" -gt 0 ] && sleep "$left"
start_sink
kill -CONT "$kc_java"
for _ in $(seq 1 200); do
  sent=$(delivered audit-outage-)
  dropped=$(p3_metric kop_audit_events_dropped_total)
  [ $(( sent + ${dropped:-0} )) -ge 40 ] && break
  sleep 0.1
done
failed=$(p3_metric kop_audit_events_failed_total)
if [ "$sent" -ge 20 ] && [ $(( sent + dropped )) -eq 40 ] && [ "${failed:-0}" = 0 ]; then
  ok "webhook back: the $sent queued events arrive, the $dropped beyond the queue are counted as dropped"
else
  bad "webhook back: queued events arrive, the rest are counted" "sent $sent, dropped ${dropped:-?}, failed ${failed:-?}"
fi
fresh=""
for _ in $(seq 1 60); do fresh="$(token ann 2>/dev/null)"; [ -n "$fresh" ] && [ "$fresh" != null ] && break; sleep 1; done
expect_ok "Keycloak back: its new tokens work, no restart of the proxy" "200" \
  code_of "$fresh" "$KOP_PROXY_URL/k8s/api/v1/namespaces/dev/pods"

echo "== faults: SIGTERM during an exec and a port-forward"
p3k() { "$KOP_KUBECTL" --server "$P3/k8s" --certificate-authority "$KOP_CA" --token "${TOK[eve]}" "$@"; }
p3k exec web -n dev -- sh -c 'echo started; sleep 60' >"$OUT/p3-exec.txt" 2>&1 &
exec_pid=$!
pf_port=$(free_port)
p3k port-forward web -n dev "$pf_port:$target" >"$OUT/p3-pf.txt" 2>&1 &
pf_pid=$!
got=""
for _ in $(seq 1 50); do got="$(curl -sf "http://127.0.0.1:$pf_port/" 2>/dev/null)" && break; sleep 0.2; done
for _ in $(seq 1 50); do grep -q started "$OUT/p3-exec.txt" && break; sleep 0.2; done
if [ "$got" = "hello through port-forward" ] && grep -q started "$OUT/p3-exec.txt"; then
  t0=$(date +%s%N)
  kill -TERM "$P3_PID"
  gone "$P3_PID" 20
  stopped_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  if ! alive "$P3_PID" && [ "$stopped_ms" -ge 4500 ] && [ "$stopped_ms" -le 10000 ]; then
    ok "SIGTERM: the sessions keep the proxy up for the 5 s drain, and no longer (${stopped_ms} ms)"
  else
    bad "SIGTERM: the drain deadline is honoured" "${stopped_ms} ms; $(tail -3 "$OUT/p3.log")"
  fi
  if gone "$exec_pid" 10; then ok "...the exec client sees its session end"; else bad "...the exec client sees its session end" "$(cat "$OUT/p3-exec.txt")"; fi
  access_exec=$(grep -c 'URI:/k8s/api/v1/namespaces/dev/pods/web/exec' "$OUT/p3-access.log")
  access_pf=$(grep -c 'URI:/k8s/api/v1/namespaces/dev/pods/web/portforward' "$OUT/p3-access.log")
  audit_exec=$(grep -c '"request_path": "/api/v1/namespaces/dev/pods/web/exec"' "$SINK_OUT")
  audit_pf=$(grep -c '"request_path": "/api/v1/namespaces/dev/pods/web/portforward"' "$SINK_OUT")
  if [ "$access_exec" -ge 1 ] && [ "$access_pf" -ge 1 ] && [ "$audit_exec" -ge 1 ] && [ "$audit_pf" -ge 1 ]; then
    ok "...and both sessions have their access line and their audit event"
  else
    bad "...and both sessions have their access line and their audit event" "access $access_exec/$access_pf, audit $audit_exec/$audit_pf"
  fi
else
  bad "SIGTERM during an exec and a port-forward: the sessions did not start" "$(cat "$OUT/p3-exec.txt" "$OUT/p3-pf.txt")"
fi
kill "$exec_pid" "$pf_pid" "$SINK_PID" 2>/dev/null

echo "== faults: etcd paused for 20 s"
etcd_pid=$(cat "$KOP_E2E_DIR/run/etcd.pid")
kill -STOP "$etcd_pid"
paused_at=$(date +%s)
out="$(curl -s -w '\n%{http_code}' --max-time 30 --cacert "$KOP_CA" -H "Authorization: Bearer ${TOK[ann]}" \
  -H 'Content-Type: application/json' -X POST "$KOP_PROXY_URL/k8s/api/v1/namespaces/dev/configmaps?timeout=3s" \
  -d '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"etcd-paused"}}')"
code="$(tail -1 <<<"$out")"
# A Status (kube-apiserver's timeout handler leaves out kind and apiVersion), and not one of
# the proxy's own upstream errors, which all say "the API server of cluster ...".
if [[ "$code" =~ ^5 ]] && [ "$(head -1 <<<"$out" | jq -r .status 2>/dev/null)" = Failure ] \
  && ! grep -q 'the API server of cluster' <<<"$out"; then
  ok "etcd paused: a write fails with the API server's own error ($code: $(head -1 <<<"$out" | jq -r .message 2>/dev/null | cut -c1-80))"
else
  bad "etcd paused: a write fails with the API server's own error" "$out"
fi
left=$(( paused_at + 20 - $(date +%s) ))
[ "$left" -gt 0 ] && sleep "$left"
kill -CONT "$etcd_pid"
recovered=""
for _ in $(seq 1 60); do
  if k ann k8s create configmap etcd-resumed -n dev --from-literal=a=1 >/dev/null 2>&1; then recovered=yes; break; fi
  sleep 1
done
if [ -n "$recovered" ]; then ok "etcd back: writes through the proxy work again, by themselves"; else bad "etcd back: writes through the proxy work again" "$(k ann k8s get cm -n dev 2>&1 | tail -2)"; fi
k ann k8s delete configmap etcd-resumed -n dev >/dev/null 2>&1

echo "== faults: kube-apiserver kind restarted under a watch and an exec"
expect_fail "before: nog may not list pods in kind" "Forbidden" k nog kind get pods -n team
k wendy kind get pods -n team --watch --request-timeout=0 >"$OUT/fault-watch.txt" 2>&1 &
watch_pid=$!
k ann kind exec web -n team -- sh -c 'echo started; sleep 120' >"$OUT/fault-exec.txt" 2>&1 &
kexec_pid=$!
for _ in $(seq 1 50); do grep -q started "$OUT/fault-exec.txt" && grep -q web "$OUT/fault-watch.txt" && break; sleep 0.2; done
# ann reads all along: while kind is down, while it comes back, and ten times after that.
rm -f "$OUT/fault-back"
( for _ in $(seq 1 400); do [ -f "$OUT/fault-back" ] && break; k ann kind get pods -n team -o name 2>&1 | head -1; sleep 0.3; done
  echo "-- back"
  for _ in $(seq 1 10); do k ann kind get pods -n team -o name 2>&1 | head -1; sleep 0.3; done ) >"$OUT/fault-gets.txt" &
gets_pid=$!
api_pid=$(cat "$KOP_E2E_DIR/run/apiserver-kind.pid")
kill -TERM "$api_pid"
gone "$api_pid" 60
watch_rc=""
if gone "$watch_pid" 20; then wait "$watch_pid"; watch_rc=$?; fi
if [ "$watch_rc" = 0 ] && ! grep -qi error "$OUT/fault-watch.txt"; then
  ok "API server stops: the watch ends cleanly"
else
  bad "API server stops: the watch ends cleanly" "exit ${watch_rc:-still running}: $(tail -3 "$OUT/fault-watch.txt")"
fi
if gone "$kexec_pid" 20; then ok "...and the exec session ends"; else bad "...and the exec session ends" "$(tail -3 "$OUT/fault-exec.txt")"; fi
bash "$KOP_E2E_DIR/run/apiserver-kind.sh" &
BG+=($!)
for _ in $(seq 1 120); do admin kind get --raw /readyz >/dev/null 2>&1 && break; sleep 0.5; done
admin kind create rolebinding fault-nog -n team --clusterrole=view --user=nog >/dev/null
granted=""
for _ in $(seq 1 60); do k nog kind get pods -n team >/dev/null 2>&1 && { granted=yes; break; }; sleep 0.5; done
if [ -n "$granted" ]; then ok "API server back: RBAC watches resumed (a new RoleBinding is honoured)"; else bad "API server back: RBAC watches resumed" "$(k nog kind get pods -n team 2>&1 | tail -1)"; fi
touch "$OUT/fault-back"
wait "$gets_pid"
reads=$(grep -vc -- '-- back' "$OUT/fault-gets.txt")
served_after=$(sed -n '/-- back/,$p' "$OUT/fault-gets.txt" | grep -c pod/web)
# Refused by the proxy, the line names ann; a just-started API server may briefly refuse the
# proxy's own identity until its RBAC caches fill (that names kube-oidc-proxy, and passes).
if grep Forbidden "$OUT/fault-gets.txt" | grep -q 'User "ann"'; then
  bad "no decision on a half-built snapshot: ann was never refused while kind restarted" "$(grep -m2 Forbidden "$OUT/fault-gets.txt")"
elif [ "$served_after" -eq 10 ]; then
  ok "no decision on a half-built snapshot: ann was never refused while kind restarted ($reads reads: $(grep -c pod/web "$OUT/fault-gets.txt") served, the rest 503/502)"
else
  bad "no decision on a half-built snapshot: reads are served again after the restart" "$(sort "$OUT/fault-gets.txt" | uniq -c)"
fi
admin kind delete rolebinding fault-nog -n team >/dev/null 2>&1
