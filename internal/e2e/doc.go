// Package e2e holds the end-to-end tests that build and run the real
// binaries — hub (with its embedded MQTT broker) and edge agents — as
// separate processes on loopback, send traffic through the Segment HTTP API,
// kill processes with SIGKILL mid-traffic and check what the hub holds.
package e2e
