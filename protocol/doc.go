// Package protocol is the wire contract shared by the Unico edge agent, the
// hub and the firmware bridge.
//
// It defines the event envelope that every touchpoint's data is turned into,
// the mapping from Segment HTTP Tracking API messages to that envelope
// (including identifier extraction and normalisation), the messages that
// cross MQTT between edges and the hub (batches, acks, profile snapshots and
// commands), their topic names, and a versioned msgpack codec with bounded
// decoding.
//
// The package performs no I/O and holds no global mutable state. Everything
// that decodes outside input returns errors that name the offending field and
// never panics; fuzz targets in this package keep it so.
package protocol
