// Package sidecars holds the sidecar bundle's files that the binary needs at run time: the
// daemon table in daemons.toml is both what the image installs as
// /etc/sidecar-init/daemons.toml and the binary's embedded default. One source, not two.
package sidecars

import _ "embed"

// DaemonsTOML is sidecars/daemons.toml, embedded at build time.
//
//go:embed daemons.toml
var DaemonsTOML []byte

// DaemonsTOMLName names the embedded table in error messages and logs.
const DaemonsTOMLName = "embedded sidecars/daemons.toml"
