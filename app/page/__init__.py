"""The Gradio review page: open a case, run a method, tune the threshold, correct, save, export.

Callbacks are thin: each calls one service function of `ReviewApp` and returns a dict of updates.
The viewer (app/static/viewer.js, NiiVue) holds the threshold and the mask in the browser; a scene
JSON tells it what to show, and Save first asks it for the mask on screen.

`layout.py` builds the page (`build_app`) and wires each event to a handler; the handlers are plain
functions, one module a feature (`opening`, `pacs_panel`, `runs`, `versions`, `side_by_side`, `tuning_bar`,
`tuning_summary`, `saving`), that take the services and the components they use first (`wiring.bind`
gives them those) and the event's values after. `server.py` serves the page.
"""
