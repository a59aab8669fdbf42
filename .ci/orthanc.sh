#!/usr/bin/env bash
# Install and start a throwaway Orthanc PACS with its DICOMweb plugin, from Debian's packages, for the
# PACS tests: HTTP on 127.0.0.1:8043 (not Orthanc's 8042, where the package's own service may listen),
# DICOMweb under /dicom-web/, basic auth anomascope/anomascope, storage in a temporary folder that `stop`
# removes. `start` and `stop` are the two verbs, as in
# .ci/postgres.sh; .ci/run stops the server when the tests end.
set -euo pipefail
action=${1:-start}
state=${TMPDIR:-/tmp}/anomascope-orthanc
if [ "$action" = stop ]; then
  if [ -f "$state/pid" ]; then
    pid=$(cat "$state/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -rf "$state"
  exit 0
fi
if ! command -v Orthanc >/dev/null 2>&1 || [ ! -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q orthanc orthanc-dicomweb >/dev/null
fi
answers() {
  python3 - <<'PY' >/dev/null 2>&1
import base64, urllib.request
request = urllib.request.Request("http://127.0.0.1:8043/dicom-web/studies")
request.add_header("Authorization", "Basic " + base64.b64encode(b"anomascope:anomascope").decode())
urllib.request.urlopen(request, timeout=2)
PY
}
if answers; then exit 0; fi
mkdir -p "$state/db"
cat >"$state/orthanc.json" <<JSON
{
  "Name": "anomascope-test",
  "StorageDirectory": "$state/db",
  "IndexDirectory": "$state/db",
  "HttpPort": 8043,
  "DicomServerEnabled": false,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": true,
  "RegisteredUsers": {"anomascope": "anomascope"},
  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/"}
}
JSON
# The server outlives this script: it must not hold the caller's stdout or stderr open.
nohup Orthanc "$state/orthanc.json" </dev/null >"$state/orthanc.log" 2>&1 &
echo $! >"$state/pid"
for _ in $(seq 30); do answers && exit 0; sleep 1; done
echo "Orthanc did not start; its log is $state/orthanc.log" >&2
exit 1
