package testenv

import "syscall"

// sysProcAttr makes the kernel kill a server if the test process dies before stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
