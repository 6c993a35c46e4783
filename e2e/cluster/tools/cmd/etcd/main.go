// Command etcd is the upstream etcd server, built from its Go module at the version
// Kubernetes itself uses (the same entry point as etcd's own main package).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
