// Package config loads, checks and describes the Spengler configuration file.
//
// A file names the databases once and the pairs of databases to cross-check;
// [Load] reads it, expands ${NAME} environment references, decodes it strictly
// (unknown keys are errors), applies the defaults and validates every setting.
// Every problem found is reported as an [*Error] naming the file, the line and
// the key path, and all of them are returned together.
//
// Passwords and DSNs are held as [Secret] values, which print, marshal and log
// as "<secret>": a [Config] may be dumped or logged anywhere.
package config
