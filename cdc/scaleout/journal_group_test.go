package scaleout_test

func workerMain() int { return 2 }
