#!/bin/sh
# Installs the real programs the integration test in this directory runs under
# sidecar-init: Debian's mitmproxy (mitmdump), git (git daemon) and
# openssh-client, and gitleaks at the version Dockerfile.sidecars pins.
#
# Run as root on Debian. gitleaks goes to $(go env GOPATH)/bin, where the test
# looks for it (GITLEAKS=/path overrides that in the test).
set -eu

# The one place the version lives for the test; it must equal the ARG
# GITLEAKS_VERSION in Dockerfile.sidecars, or the test proves another version.
gitleaks_version=v8.30.1

pinned=$(sed -n 's/^ARG GITLEAKS_VERSION=//p' "$(dirname "$0")/../../Dockerfile.sidecars")
if [ "${pinned}" != "${gitleaks_version}" ]; then
	echo "install-deps: Dockerfile.sidecars pins gitleaks ${pinned}, this script ${gitleaks_version}; make them equal" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends mitmproxy git openssh-client >/dev/null

gobin=$(go env GOPATH)/bin
# Built from source through the module proxy (about a minute); no release
# download needed.
GOBIN=${gobin} go install "github.com/zricethezav/gitleaks/v8@${gitleaks_version}"
echo "install-deps: mitmdump $(command -v mitmdump), git $(git --version), gitleaks ${gobin}/gitleaks (${gitleaks_version})"
