"""What the host's model reads: the server's instructions, tool descriptions and the prompt.

The tool names and arguments are the public interface; these texts are how a model learns to
use them, so they say what to do next in every case.
"""

from __future__ import annotations

INSTRUCTIONS = (
    "mcp-local-provider lets you serve as the local language model of the user's editor. "
    "Call request_local_provider_access, have the user approve the session, then loop: "
    "next_request -> write the answer -> respond. The prompt serve_as_local_model explains the "
    "loop in full."
)

SAMPLING_INSTRUCTIONS = (
    "mcp-local-provider lets this host's model serve as the local language model of the user's "
    "editor through MCP sampling: each editor request arrives as a sampling request. It asks "
    "for access when the host connects; request_local_provider_access asks again and "
    "provider_status shows where things stand."
)

REQUEST_ACCESS = (
    "Ask the user's local mcp-local-provider daemon to let you serve as their editor's local "
    "model. The user must approve the session: if the status is 'pending', tell the user the "
    "approve command from the result, then call next_request (it waits for the approval). "
    "Calling again while a session is pending or granted just reports it. "
    "scopes: only 'inference' (chat and code completion) can be served from here. "
    "reason: one line shown to the user when they approve. "
    "ttl_seconds: how long the session should last (0: the daemon's default). "
    "models: the model names the editor will see (empty: the configured default)."
)

SAMPLING_REQUEST_ACCESS = (
    "Ask the user's local mcp-local-provider daemon to let this host's model serve as their "
    "editor's local model, answering each request through MCP sampling. The user must approve "
    "the session: if the status is 'pending', tell the user the approve command from the result. "
    "Nothing else is needed afterwards. "
    "scopes: only 'inference'. reason: one line shown to the user. ttl_seconds: session "
    "lifetime (0: the daemon's default). models: model names the editor sees (empty: default)."
)


def next_request(limit: float) -> str:
    return (
        "Wait for the next request from the user's editor and return it: its request_id, the "
        "conversation (or, for code completion, the text before and after the cursor), its "
        "parameters and how many seconds you have to answer. Answer it with respond (or "
        "respond_partial, then respond) or decline, then call next_request again. "
        "status 'none' means nothing arrived yet: call again. 'waiting_for_approval': the user "
        "has not approved yet: call again. 'ended': the session is over: stop looping. "
        f"wait_seconds is cut to {limit:g} s, because MCP hosts give up on a tool call after 60 s."
    )


RESPOND = (
    "Send your answer to a request from next_request and complete it. content: the answer "
    "text, or only the rest of it if you already sent pieces with respond_partial (may be "
    "empty then). finish_reason: 'stop' normally, 'length' if you cut the answer short. "
    "The answer is cut at the editor's stop sequences and max_tokens. If the editor cancelled "
    "the request meanwhile, the result says so and the answer is discarded."
)

RESPOND_PARTIAL = (
    "Stream a piece of your answer to a request to the editor at once (the editor shows it "
    "while you write the rest). Pieces are joined without separators, so include spaces and "
    "newlines as they should appear. Finish with respond. If the editor cancelled the "
    "request, the result says so: stop working on it."
)

DECLINE = (
    "Refuse a request you cannot or should not answer; the editor gets an error with your "
    "reason. Then call next_request again."
)

STATUS = (
    "Report the session (none, connecting, pending with the approve command, granted with its "
    "expiry, or ended with the reason) and the requests waiting or in your hands."
)

RELEASE = (
    "End the session now: the daemon stops sending requests here and the editor no longer "
    "sees these models. Call it when the user asks you to stop serving."
)

PROMPT_DESCRIPTION = "Serve as the editor's local model: request access, then answer in a loop."


def serve_prompt(limit: float) -> str:
    return f"""\
You will now serve as the local language model of my code editor, through the \
mcp-local-provider tools. My editor sends chat and code-completion requests; you answer them.

1. Call request_local_provider_access with scopes ["inference"] and a one-line reason. If the \
status is "pending", show me the approve command from the result and go on: I will approve it.
2. Call next_request. It waits up to {limit:g} s. If the status is "none" or \
"waiting_for_approval", call it again right away. If it is "ended", stop and tell me why.
3. When it returns a request, write the answer the model should give:
   - for a chat request, the assistant's next message to the conversation shown;
   - for a completion request, only the text that goes at the cursor;
   - only the answer itself: no remarks about this process, no tool calls, no code fences \
unless the answer needs them; respect max_tokens and stop if given.
   Send it with respond(request_id, content). For a long answer, send pieces with \
respond_partial as you write and finish with respond. If you cannot answer, call decline.
   Answer within the seconds given: the editor is waiting.
4. If a result says the request was cancelled, drop it and go back to step 2.
5. Repeat from step 2 until I tell you to stop; then call release_access.

Do not ask me for confirmation between requests: keep looping.
"""
