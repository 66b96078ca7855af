// Package e2e holds Spengler's end-to-end tests: the engine, the HTTP
// endpoints and real replicated PostgreSQL servers started by the tests.
package e2e
