# Shared by redis.sh and sentinel.sh (sourced): names, and the master as the Sentinels see it.
# Every name is the pod's stable DNS name under the headless Service, so an address survives a
# pod's restart on another node (the Sentinels resolve and announce host names).
set -eu
MASTER_NAME=gonets
DOMAIN="gonets-redis-headless.${POD_NAMESPACE}.svc.cluster.local"
SELF="$(hostname).${DOMAIN}"
FIRST="gonets-redis-0.${DOMAIN}"

# The master's host name as the first Sentinel that answers knows it; empty when none does
# (the very first start: no Sentinel runs yet).
current_master() {
  for i in 0 1 2; do
    # (the Sentinels take no password: REDISCLI_AUTH is the redis-servers')
    addr=$(unset REDISCLI_AUTH; timeout 3 redis-cli --raw -h "gonets-redis-$i.${DOMAIN}" \
           -p 26379 SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null \
           | head -n 1 || true)
    if [ -n "$addr" ]; then
      echo "$addr"
      return 0
    fi
  done
  echo ""
}
