"""Read-only views of a lattice shared by the CLI (`get components|providers`, `events`,
`spy`) and the web dashboard (`trellis ui`): what runs where, the event feed, invocation taps."""
