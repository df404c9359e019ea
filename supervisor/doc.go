// Package supervisor is execgated's request path: it serves the agent and
// admin sockets and carries each request from the caller's credentials to
// its end record.
//
// What it promises:
//
//   - The caller is who the kernel says (SO_PEERCRED, read once per
//     connection), never what the request says. Every route names its
//     audience in one table (routes): the agent socket serves run, check
//     and whoami to a uid with a profile, for that profile only, and
//     answers 403 to every admin route; the admin socket serves root and
//     the configured admins, and nothing else.
//   - A request goes through its stages in order (request: open, gate,
//     approve, run), and any stage may refuse it with a *refusal, which
//     alone decides the record, the answer and the exit (126 denied, 125
//     execgate failed or a bad request).
//   - Nothing runs without its record: the request record, its decisions,
//     an approval and the start record are written first, and when one
//     cannot be, the request is refused or the run killed (record). The
//     rest of the trail, denials, end records and admin actions among
//     them, is noted (note): a failure is logged and counted, never silent.
//   - Kill switches and lockdown hold at every stage: checked when the
//     request is decided, again after a human approved it, and once more
//     just before the agent's first instruction.
//   - Every run opened ends with an end record, written before the client's
//     last answer.
package supervisor
