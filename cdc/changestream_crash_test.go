package cdc_test

func childMain() int { return 2 }
