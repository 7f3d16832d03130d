#!/usr/bin/env bash
# mysqlclient (Django's MariaDB/MySQL driver) compiles against the client
# library's headers. Install them on Debian when they are missing.
set -euo pipefail
if pkg-config --exists libmariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null; then
  exit 0
fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "mysql-headers: installing libmariadb-dev (for mysqlclient)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends libmariadb-dev pkg-config >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends libmariadb-dev pkg-config >/dev/null; }
  exit 0
fi
echo "mysql-headers: mysqlclient needs the MariaDB or MySQL client headers:" >&2
echo "  Debian/Ubuntu: apt-get install libmariadb-dev pkg-config" >&2
echo "  macOS:         brew install mariadb-connector-c pkg-config" >&2
exit 1
