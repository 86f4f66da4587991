#!/usr/bin/env bash
# Installs or upgrades the Outpost agent as a systemd service on Raspberry Pi OS (Debian
# bookworm, arm64; any Debian-like Linux with systemd works the same way).
#
#   sudo deploy/agent/install.sh --hub mqtt://hub.example.net:1883 --id pi-1   # first install
#   sudo deploy/agent/install.sh                                               # upgrade
#   deploy/agent/install.sh --dry-run [--hub URL --id ID]                      # show the plan
#
# Run it from a built checkout (npm ci && npm run build): it copies dist/, package.json and
# package-lock.json to /opt/outpost and installs the production dependencies there. It is safe to
# run again: the application and the unit are replaced, /etc/outpost/agent.yaml and agent.env
# are never overwritten once they exist, the data in /var/lib/outpost is never touched.
#
# Environment:
#   OUTPOST_NODE    the Node.js binary the service runs (default /usr/bin/node, the path Debian's
#                   and NodeSource's packages use); another path is written into the unit's ExecStart.
#   OUTPOST_PREFIX  where the files would go (default /); any other value only with --dry-run,
#                   so that tests can run the whole plan against an empty directory.
set -euo pipefail
umask 022 # what lands in /opt/outpost and the unit must be readable by everyone, whatever root's umask

readonly MIN_NODE_MAJOR=20 MIN_NODE_MINOR=19
readonly SERVICE=outpost-agent USER_NAME=outpost
readonly AGENT_ID_RE='^[A-Za-z0-9_.-]{1,128}$'
# A URL MQTT.js connects to; no quotes, backslashes, | or & so it can go into the YAML and sed.
readonly HUB_RE='^(mqtt|mqtts|tcp|tls|ws|wss)://[^][:space:]"\\|&]+$'

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR=$script_dir
readonly SRC=${SCRIPT_DIR%/deploy/agent}

dry_run=0
hub=
agent_id=

usage() {
  cat <<EOF
Usage: $0 [--dry-run] [--hub URL --id AGENT_ID]

Installs or upgrades the Outpost agent (systemd unit ${SERVICE}). Run as root.
  --hub URL       hub MQTT URL for a new /etc/outpost/agent.yaml (first install only)
  --id AGENT_ID   this device's agent id, unique in the fleet (first install only)
  --dry-run       print what would be done, change nothing (root not required)
EOF
}

note() { printf '==> %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() {
  printf 'install.sh: error: %s\n' "$1" >&2
  shift
  if (($# > 0)); then printf '  %s\n' "$@" >&2; fi
  exit 1
}

# Runs a command, or in --dry-run only prints it (quoted, ready to paste).
run() {
  if ((dry_run)); then
    printf '    would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# The destination path for an absolute path, under OUTPOST_PREFIX.
dest() {
  local prefix=${OUTPOST_PREFIX:-/}
  printf '%s%s' "${prefix%/}" "$1"
}

# version_ok MAJOR MINOR: true if MAJOR.MINOR >= the minimum Node.js version.
version_ok() {
  [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]] || return 1
  ((10#$1 > MIN_NODE_MAJOR || (10#$1 == MIN_NODE_MAJOR && 10#$2 >= MIN_NODE_MINOR)))
}

# The version of $node ("20.19.2"), empty if it is missing or does not run.
node_version() {
  local v
  [[ -x $node ]] || return 0
  v=$("$node" --version 2>/dev/null) || return 0
  printf '%s' "${v#v}"
}

node_is_recent() {
  local v major minor
  v=$(node_version)
  [[ -n $v ]] || return 1
  IFS=. read -r major minor _ <<<"$v"
  version_ok "$major" "$minor"
}

# The nodejs version apt would install ("18.20.4+dfsg-1~deb12u2"), empty if none.
apt_candidate() {
  local candidate
  command -v apt-cache >/dev/null || return 0
  candidate=$(LC_ALL=C apt-cache policy nodejs 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
  [[ $candidate == "(none)" ]] || printf '%s' "$candidate"
}

candidate_is_recent() {
  local v=$1 major minor
  v=${v#*:} # the epoch, if any
  IFS=.+~- read -r major minor _ <<<"$v"
  version_ok "$major" "$minor"
}

# npm from the same installation as node when it is there (NodeSource, tarballs), else the PATH's.
find_npm() {
  if [[ -x ${node%/*}/npm ]]; then
    printf '%s' "${node%/*}/npm"
  else
    command -v npm || true
  fi
}

node_too_old() {
  local have candidate=$1
  have=$(node_version)
  die "Node.js >= ${MIN_NODE_MAJOR}.${MIN_NODE_MINOR} is needed at ${node} (found: ${have:-nothing}), and the distribution's nodejs package is ${candidate:-not available}." \
    "Debian bookworm (and Raspberry Pi OS based on it) ships Node.js 18, which is too old. Install a newer" \
    "Node.js yourself, then run this script again. For example:" \
    "  - NodeSource's apt repository for Node.js 20 or 22 (https://github.com/nodesource/distributions):" \
    "    add its signing key and source list as its README describes, then: apt-get install nodejs" \
    "    (installs /usr/bin/node and npm, and upgrades with the rest of the system);" \
    "  - the official arm64 tarball from https://nodejs.org/en/download unpacked under /usr/local," \
    "    then: OUTPOST_NODE=/usr/local/bin/node $0 ..." \
    "This script does not add package sources or pipe downloads into a shell on your behalf."
}

while (($# > 0)); do
  case $1 in
    --dry-run) dry_run=1 ;;
    --hub) hub=${2:?--hub needs a URL}; shift ;;
    --hub=*) hub=${1#--hub=} ;;
    --id) agent_id=${2:?--id needs an agent id}; shift ;;
    --id=*) agent_id=${1#--id=} ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

prefix=${OUTPOST_PREFIX:-/}
node=${OUTPOST_NODE:-/usr/bin/node}
APP_DIR=$(dest /opt/outpost)
UNIT_FILE=$(dest "/etc/systemd/system/${SERVICE}.service")
CONF_DIR=$(dest /etc/outpost)
readonly prefix node APP_DIR UNIT_FILE CONF_DIR
readonly CONFIG=$CONF_DIR/agent.yaml ENV_FILE=$CONF_DIR/agent.env

# --- Checks. Nothing changes until they pass (but apt's package lists, if Node.js is needed). ---

((dry_run)) && note "dry run: nothing will be changed"
[[ $(uname -s) == Linux ]] || die "this installs a systemd service: it runs on Linux only (this is $(uname -s))"
if [[ $prefix != / ]] && ((!dry_run)); then
  die "OUTPOST_PREFIX=${prefix} is only for --dry-run; a real install goes to /"
fi
if ((EUID != 0)); then
  ((dry_run)) || die "run as root: sudo $0"
  warn "not root: fine for --dry-run, but the real install needs root"
fi

for f in dist/cli/outpost.js package.json package-lock.json deploy/agent/outpost-agent.service deploy/agent/agent.yaml; do
  [[ -f $SRC/$f ]] || die "$SRC/$f is missing: run this script from a built checkout (npm ci && npm run build)"
done

arch=$(uname -m)
[[ $arch == aarch64 || $arch == arm64 ]] || warn "written for arm64 (Raspberry Pi OS 64-bit); this machine is ${arch}, continuing"

if [[ ! -d /run/systemd/system ]] || ! command -v systemctl >/dev/null; then
  ((dry_run)) || die "systemd is not running here (a container?): nothing could start the service"
  warn "systemd is not running here; the real install needs it"
fi

# The service runs with ProtectHome=: a Node.js in a home directory (nvm, say) is invisible to
# it. The path also goes into ExecStart, so keep it plain.
[[ $node =~ ^/[A-Za-z0-9._/+-]+$ ]] || die "OUTPOST_NODE must be a plain absolute path, got: ${node}"
case $node in
  /home/* | /root/* | /run/user/*)
    die "OUTPOST_NODE=${node}: the service cannot see home directories (ProtectHome=); install Node.js system-wide" ;;
  *) ;;
esac

existing_config=0
if [[ -e $CONFIG ]]; then
  existing_config=1
  [[ -z $hub && -z $agent_id ]] || warn "--hub and --id are ignored: ${CONFIG} exists and is never overwritten; edit it instead"
else
  # The example's hub and id are placeholders: two devices started with the same id would take
  # each other's connection and sequence numbers, so a first install must name both.
  [[ -n $hub && -n $agent_id ]] || die "first install: ${CONFIG} does not exist yet; pass --hub URL and --id AGENT_ID"
  [[ $hub =~ $HUB_RE ]] || die "--hub: expected a URL such as mqtt://hub.example.net:1883, got: ${hub}"
  [[ $agent_id =~ $AGENT_ID_RE ]] || die "--id: expected 1 to 128 letters, digits, dots, underscores or dashes, got: ${agent_id}"
fi

install_node=0
if ! node_is_recent; then
  [[ $node == /usr/bin/node ]] || die "OUTPOST_NODE=${node} is missing or older than ${MIN_NODE_MAJOR}.${MIN_NODE_MINOR} (found: $(node_version))"
  # Refresh the package lists before judging what the distribution offers (not in a dry run:
  # that would change /var/lib/apt/lists).
  if ((dry_run)); then
    run apt-get update
  else
    command -v apt-get >/dev/null || die "Node.js is missing and apt-get is not available to install it"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
  fi
  candidate=$(apt_candidate)
  candidate_is_recent "$candidate" || node_too_old "$candidate"
  install_node=1
fi

if [[ $node != /usr/bin/node && -z $(find_npm) ]]; then die "no npm next to ${node} or on the PATH"; fi

was_active=0
if ((!dry_run)) && systemctl is-active --quiet "$SERVICE"; then was_active=1; fi

# --- Node.js --------------------------------------------------------------------------------

if ((install_node)); then
  note "installing Node.js ${candidate} from the distribution"
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs
  if ((!dry_run)); then
    node_is_recent || die "${node} is still missing or too old after apt-get install nodejs"
  fi
fi
npm=$(find_npm)
if [[ -z $npm ]]; then
  # Debian packages npm apart from nodejs (NodeSource's nodejs includes it).
  note "installing npm from the distribution"
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm
  npm=/usr/bin/npm
fi
if ((install_node && dry_run)); then
  note "Node.js ${node} (to be installed), npm ${npm}"
else
  note "Node.js ${node} ($(node_version)), npm ${npm}"
fi

# --- User -----------------------------------------------------------------------------------

# A system user with no login and no home of its own: the service runs as it, and only it can
# write /var/lib/outpost (created by systemd from StateDirectory=).
if getent passwd "$USER_NAME" >/dev/null; then
  note "user ${USER_NAME} exists"
else
  note "creating system user ${USER_NAME}"
  group_option=(--user-group)
  if getent group "$USER_NAME" >/dev/null; then group_option=(--gid "$USER_NAME"); fi
  run useradd --system "${group_option[@]}" --home-dir /var/lib/outpost --no-create-home \
    --shell /usr/sbin/nologin --comment "Outpost agent" "$USER_NAME"
fi

# --- Application ----------------------------------------------------------------------------

# Built next to the live copy and swapped in at the end: a failed npm ci leaves the running
# version as it was. The files stay root's: the service can read its code, not change it.
staging=${APP_DIR}.new
note "installing the application to ${APP_DIR}"
run rm -rf "$staging" "${APP_DIR}.old"
run install -d -m 0755 "$staging"
run cp -R "$SRC/dist" "$staging/dist"
run cp "$SRC/package.json" "$SRC/package-lock.json" "$staging/"
# --ignore-scripts: npm ci would otherwise run the package's own `prepare` (the TypeScript
# build, which needs the dev dependencies). `npm rebuild` then runs the dependencies' install
# scripts (better-sqlite3's native module) without it. PATH puts ${node}'s directory first so
# that scripts run by npm use the same Node.js as the service.
run env "PATH=${node%/*}:${PATH}" "$npm" ci --prefix "$staging" --omit=dev --ignore-scripts --no-audit --no-fund
run env "PATH=${node%/*}:${PATH}" "$npm" rebuild --prefix "$staging"
if [[ -e $APP_DIR ]]; then run mv "$APP_DIR" "${APP_DIR}.old"; fi
run mv "$staging" "$APP_DIR"
run rm -rf "${APP_DIR}.old"

# --- Unit -----------------------------------------------------------------------------------

note "installing ${UNIT_FILE}"
if [[ $node == /usr/bin/node ]]; then
  run install -m 0644 "$SRC/deploy/agent/outpost-agent.service" "$UNIT_FILE"
elif ((dry_run)); then
  printf '    would write: %s with ExecStart=%s ...\n' "$UNIT_FILE" "$node"
else
  sed "s|^ExecStart=/usr/bin/node |ExecStart=${node} |" "$SRC/deploy/agent/outpost-agent.service" >"${UNIT_FILE}.tmp"
  grep -q "^ExecStart=${node} " "${UNIT_FILE}.tmp" || die "could not set ExecStart in ${UNIT_FILE}.tmp"
  chmod 0644 "${UNIT_FILE}.tmp"
  mv "${UNIT_FILE}.tmp" "$UNIT_FILE"
fi

# --- Configuration --------------------------------------------------------------------------

# root:outpost 0750 (as ConfigurationDirectoryMode= says): the agent reads, only root writes.
run install -d -m 0750 -o root -g "$USER_NAME" "$CONF_DIR"
if ((existing_config)); then
  note "keeping ${CONFIG} (an existing configuration is never overwritten)"
elif ((dry_run)); then
  printf '    would write: %s from deploy/agent/agent.yaml with hub: "%s" and id: "%s" (root:%s 0640)\n' \
    "$CONFIG" "$hub" "$agent_id" "$USER_NAME"
else
  note "writing ${CONFIG} (hub ${hub}, id ${agent_id})"
  sed -e "s|^hub: .*|hub: \"${hub}\"|" -e "s|^id: .*|id: \"${agent_id}\"|" "$SRC/deploy/agent/agent.yaml" >"${CONFIG}.tmp"
  if ! grep -qxF "hub: \"${hub}\"" "${CONFIG}.tmp" || ! grep -qxF "id: \"${agent_id}\"" "${CONFIG}.tmp"; then
    die "could not fill in hub and id in ${CONFIG}.tmp"
  fi
  chown "root:${USER_NAME}" "${CONFIG}.tmp"
  chmod 0640 "${CONFIG}.tmp"
  mv "${CONFIG}.tmp" "$CONFIG"
fi
if [[ -e $ENV_FILE ]]; then
  note "keeping ${ENV_FILE}"
elif ((dry_run)); then
  printf '    would write: %s, comments only (root:%s 0640)\n' "$ENV_FILE" "$USER_NAME"
else
  note "writing ${ENV_FILE} (for secrets; only root and ${USER_NAME} can read it)"
  (
    umask 027
    cat >"${ENV_FILE}.tmp" <<'EOF'
# Environment of the outpost-agent service, for secrets that stay out of agent.yaml.
# Any option can be given as OUTPOST_<NAME>; these win over agent.yaml. Then:
#   systemctl restart outpost-agent
#OUTPOST_TOKEN=
EOF
  )
  chown "root:${USER_NAME}" "${ENV_FILE}.tmp"
  chmod 0640 "${ENV_FILE}.tmp"
  mv "${ENV_FILE}.tmp" "$ENV_FILE"
fi

# --- Service --------------------------------------------------------------------------------

note "enabling and starting ${SERVICE}"
run systemctl daemon-reload
run systemctl enable --now "$SERVICE"
# enable --now leaves a running service alone: an upgrade restarts it onto the new code and unit.
if ((dry_run)); then
  printf '    would run: systemctl restart %s (only if it was already running: an upgrade)\n' "$SERVICE"
elif ((was_active)); then
  run systemctl restart "$SERVICE"
fi

done_word=installed
if ((dry_run)); then done_word="would be installed"; fi
cat <<EOF

Outpost agent ${done_word}. Configuration: /etc/outpost/agent.yaml (secrets: /etc/outpost/agent.env);
data: /var/lib/outpost. After editing the configuration: systemctl restart ${SERVICE}

  systemctl status ${SERVICE}
  journalctl -u ${SERVICE} -f
  curl http://127.0.0.1:7801/v1/status
EOF
