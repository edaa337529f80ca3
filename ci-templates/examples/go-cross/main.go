// get-cpu-os prints the platform it was compiled for and the one it runs on.
package main

import (
	"fmt"
	"runtime"
)

func main() {
	fmt.Printf("built for %s/%s\n", runtime.GOOS, runtime.GOARCH)
}
