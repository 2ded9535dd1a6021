#!/usr/bin/env bash
# Installs everything the project needs, from its own files, and can be run again:
# Debian packages (PostgreSQL, Redis, chromium for the dashboard test), the Python venv,
# the connector jar and the benchmarks' jar (Maven).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql-15)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v java >/dev/null || need_apt+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
# The API's dashboard test drives Debian's headless chromium through its chromedriver;
# wrk drives bench/api_frameworks.py.
command -v chromium >/dev/null || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
command -v wrk >/dev/null || need_apt+=(wrk)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
fi
# Debian's packaging starts a default redis on 6379; the project runs its own.
if systemctl is-active --quiet redis-server 2>/dev/null; then systemctl stop redis-server || true; fi

if [ ! -x .venv/bin/python ]; then
  python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi
bash scripts/setup_kcl.sh     # KCL jars (Maven) + the amazon-kclpy wheel, see the script
# requirements.lock pins everything pyproject.toml asks for (`make lock` compiles it).
if [ ! -f .venv/.installed ] || [ requirements.lock -nt .venv/.installed ]; then
  echo "setup: pip install -r requirements.lock"
  .venv/bin/pip install -q -r requirements.lock
  touch .venv/.installed
fi

# The CDK CLI and the IAM simulator of the deployment tests, pinned by deploy/package-lock.json.
if [ ! -d deploy/node_modules ] || [ deploy/package-lock.json -nt deploy/node_modules ]; then
  echo "setup: npm ci (deploy/package.json)"
  npm ci --no-audit --no-fund --loglevel=error --prefix deploy
  touch deploy/node_modules
fi

# The CA bundle the jar carries (deploy/pom.xml packs deploy/target/certs; rewritten only
# when its content changes), written before the jar so that the jar built here is the one
# deploy/package.sh builds: a test session's JVM that has the jar open must not see it
# change under it when a test packages the MSF zip.
PYTHONPATH=. .venv/bin/python -m deploy.certs >/dev/null
jar=deploy/target/pizzastream-deps.jar
# Rebuilt when a source is newer than the jar; a source directory counts too, since removing
# or moving a class out changes only its directory.
if [ ! -f "$jar" ] || [ -n "$(find deploy/pom.xml connectors/jvm/src/main -newer "$jar" 2>/dev/null)" ] \
   || [ -n "$(find deploy/target/certs -newer "$jar" -type f 2>/dev/null)" ]; then
  echo "setup: mvn package (connector jar)"
  mvn -q -B -f deploy/pom.xml package -DskipTests
fi
# The benchmarks' JVM classes, a jar of their own (bench/jvm/pom.xml), never in the one above.
bench_jar=bench/jvm/target/pizzastream-bench.jar
if [ ! -f "$bench_jar" ] || [ -n "$(find bench/jvm/pom.xml bench/jvm/src -newer "$bench_jar" 2>/dev/null)" ]; then
  echo "setup: mvn package (benchmark jar)"
  mvn -q -B -f bench/jvm/pom.xml package
fi
# The order path's core compiled (deploy/compiled_core.py: built once per version of the
# sources, into .cache/compiled-core/), which the jobs ship; built here so that the first
# job of a run does not wait for it.
PYTHONPATH=. .venv/bin/python -m deploy.compiled_core >/dev/null
echo "setup: ready"
