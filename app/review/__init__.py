"""The review page's services, with no Gradio, so every callback is testable without a browser: one
`ReviewSession` per reader (session.py) and the parts that work on it, each a `Services` (services.py,
what every reader shares) built on the parts it uses: opening and storing cases (cases.py), running methods
(runs.py), the viewer's scene (scene.py), a second method beside the first (compare.py), saving and the
saved versions (annotations.py) and the PACS (pacs_link.py). `ReviewApp` (app.py) is all of them, the one
object the page holds; messages.py shows errors as the page does. Threshold-tuning sessions: worklists.py,
prefetch.py and tuning_session.py; uploads.py says which files a reader may hand the page."""
