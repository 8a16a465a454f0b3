#!/bin/sh
# The webhook's certificate for a cluster without cert-manager, made with
# openssl: a CA (10 years) and the webhook's certificate from it (1 year), for
# the DNS names of the webhook's Service. Writes into DIR (default ./startup-lock-inject-tls):
#   ca.crt, ca.key        the CA: keep ca.key safe, it signs the next certificate
#   tls.crt, tls.key      the webhook's certificate and key
#   secret.yaml           the Secret startup-lock-inject-tls the webhook mounts
#   ca-bundle.txt         the CA in base64, for the configuration's caBundle
# Then:
#
# kubectl apply -f DIR/secret.yaml
# kubectl apply -f deploy/kubernetes/inject/webhook.yaml
# kubectl patch mutatingwebhookconfiguration startup-lock-inject --type=json \
#   -p "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$(cat DIR/ca-bundle.txt)\"}]"
# To renew before tls.crt ends, run it again with the same DIR: the CA is
# kept, so the caBundle stays; apply secret.yaml and the webhook reads the
# new files within a minute or two, without a restart.
set -eu
# Only the user reads what is written here: the keys, and secret.yaml that holds tls.key.
umask 077

dir=${1:-./startup-lock-inject-tls}
service=${SERVICE:-startup-lock-inject}
namespace=${NAMESPACE:-startup-lock}
mkdir -p "$dir"
cd "$dir"

# ECDSA P-256: small and quick; the API server's Go TLS client accepts it.
newkey="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

if [ ! -f ca.key ] || [ ! -f ca.crt ]; then
  # shellcheck disable=SC2086 # $newkey is several words on purpose
  openssl req -x509 $newkey -keyout ca.key -out ca.crt -days 3650 \
    -subj "/CN=startup-lock-inject-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

cat > server.ext <<EXT
subjectAltName = DNS:$service.$namespace.svc, DNS:$service.$namespace.svc.cluster.local
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
EXT
# shellcheck disable=SC2086
openssl req -new $newkey -keyout tls.key -out tls.csr -subj "/CN=$service.$namespace.svc" 2>/dev/null
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
  -extfile server.ext -out tls.crt 2>/dev/null
rm -f tls.csr server.ext

b64() { openssl base64 -A -in "$1"; }
# A new file, so the umask applies even over an older run's world-readable one.
rm -f secret.yaml
cat > secret.yaml <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: startup-lock-inject-tls
  namespace: $namespace
type: kubernetes.io/tls
data:
  tls.crt: $(b64 tls.crt)
  tls.key: $(b64 tls.key)
  ca.crt: $(b64 ca.crt)
YAML
b64 ca.crt > ca-bundle.txt
echo "Wrote $dir/secret.yaml and $dir/ca-bundle.txt for $service.$namespace.svc"
