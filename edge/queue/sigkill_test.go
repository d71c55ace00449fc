package queue_test

const childEnv = "UNICO_QUEUE_TEST_CHILD"

func runChild() int { return 0 }
