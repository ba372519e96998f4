// Package readme holds every Go snippet of the repository's README.md as
// compiled code, so that the README cannot tell users to call something that
// does not exist.
//
// Each snippet is a region of a function in snippets.go, between a
// "// readme:begin <name>" and a "// readme:end" comment. What the snippet
// needs (a logger, a publisher, the request) is declared around the region,
// outside the markers, so the README shows only what a user writes.
// TestREADMESnippets (go test ./..., so make test) fails when a ```go block of
// README.md is not, after removing common indentation, identical to one
// region, and when a region is used by no block. To change a snippet, edit
// the README block and its region the same way.
//
// Nothing here is meant to be run or imported.
package readme
