"""The page's layout: its components, and which handler each event calls with what."""

from __future__ import annotations

import atexit
import os
from pathlib import Path

import gradio as gr

from anomascope.app.bundles import ASSETS, discover, model_dirs
from anomascope.app.export import FORMATS
from anomascope.app.pacs import Pacs
from anomascope.app.page.markup import (
    ADVANCE,
    PAGE_STYLE,
    PREFETCH,
    READ_MASK,
    READ_PANES,
    SHOW_COMPARISON,
    SHOW_SCENE,
    SHOW_SECOND,
    TUNING_KEYS,
    VIEWER_CSS,
    VIEWER_HTML,
)
from anomascope.app.page.opening import Opening, on_folder, on_upload, on_worklist
from anomascope.app.page.pacs_panel import on_pacs_open, on_pacs_search, on_pacs_send, on_pacs_study
from anomascope.app.page.reader import signed_in
from anomascope.app.page.runs import on_method, on_run
from anomascope.app.page.saving import on_save, run_export
from anomascope.app.page.screen import Screen, method_text
from anomascope.app.page.side_by_side import on_second_close, on_second_run, on_swap
from anomascope.app.page.tuning_bar import TuningBar, on_preview, on_step, on_tuning_start
from anomascope.app.page.tuning_summary import SummaryTab, on_save_preset, on_summarise
from anomascope.app.page.versions import on_compare, on_version
from anomascope.app.page.wiring import bind
from anomascope.app.review.app import ReviewApp
from anomascope.app.review.session import ReviewSession
from anomascope.app.review.tuning_session import TuningService
from anomascope.app.review.worklists import DATABASE, PACS_SOURCE, ROOTS_ENV, worklist_roots
from anomascope.app.viewer import STATIC, niivue_script_tags
from anomascope.engine.io import SUPPORTED, quiet_reader_libraries
from anomascope.storage import Database

SAMPLES = ASSETS / "samples"
SINGLE_USER = (
    "**Single-user mode.** No reader accounts exist, so anyone who can open this page can read and save "
    "every annotation, under any name. Add accounts with `anomascope users add NAME` to require sign-in."
)
SIGNED_IN = "Readers sign in; every run and annotation is saved under the signed-in reader's name."
HISTORY_HEADERS = ["what", "id", "when", "who / method", "details", "label · note"]
AGREEMENT_HEADERS = ["case", "readers", "Dice between readers", "thresholds", "threshold spread"]
WORKLIST_HEADERS = ["case", "file", "modality", "shape", "runs", "saved", "opened"]
PACS_HEADERS = ["patient", "patient ID", "date", "description", "modalities", "accession", "study UID"]


def data_dir() -> Path:
    return Path(os.environ.get("ANOMASCOPE_DATA_DIR", "data"))


def default_review_app(pacs: Pacs | None = None) -> ReviewApp:
    """The review services on the data folder's database, the installed bundles and the CPU or GPU, with
    `pacs` to search and send to."""
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return ReviewApp(Database(), discover(model_dirs()), folder / "cases", pacs=pacs)


def build_app(review_app: ReviewApp | None = None, login: bool = False) -> gr.Blocks:
    """The page; with `login` every reader signs in (serve passes `auth`) and saves under that name."""
    quiet_reader_libraries()
    app = review_app or default_review_app()
    for store in (app.volumes, app.exports):  # patient images never outlive the server
        atexit.register(store.remove)
    catalogue = app.catalogue
    folder_roots = worklist_roots()
    tuning_service = TuningService(app, folder_roots=folder_roots)

    gr.set_static_paths([STATIC, app.volumes.root])
    samples = sorted(str(p) for p in SAMPLES.glob("*") if p.suffix.lower() in (".jpg", ".png", ".dcm", ".nii", ".gz"))

    # Patient images uploaded through the page leave Gradio's cache after an hour, and when it stops.
    with gr.Blocks(title="Anomascope", delete_cache=(600, 3600)) as demo:
        session = gr.State(ReviewSession(), delete_callback=lambda s: app.volumes.drop(s.token))
        tuning = gr.State(None)  # the reader's TuningView while a tuning session runs
        summary_state = gr.State(None)  # the last SessionSummary, whose proposal "save" stores
        scene = gr.Textbox(visible="hidden", elem_id="scene")
        payload = gr.Textbox(visible="hidden", elem_id="payload")
        comparison = gr.Textbox(visible="hidden", elem_id="comparison")
        second_scene = gr.Textbox(visible="hidden", elem_id="second-scene")
        panes = gr.Textbox(visible="hidden", elem_id="panes")
        upcoming = gr.Textbox(visible="hidden", elem_id="upcoming")  # the tuning session's next case, ahead
        with gr.Sidebar(label="Open a case", open=True, width=600, elem_id="open-panel") as open_panel:
            gr.Markdown("### Open a case")
            upload = gr.File(label="A file (a DICOM series as .zip)", type="filepath", elem_id="upload")
            folder = gr.File(
                label="…or a folder holding one DICOM series",
                file_count="directory",
                type="filepath",
                elem_id="folder",
            )
            if samples:
                gr.Examples(samples, inputs=upload, label="Demo cases")
            with gr.Accordion("Worklist: cases in the database (click a row to open it)", open=True):
                worklist = gr.Dataframe(
                    headers=WORKLIST_HEADERS,
                    value=app.worklist(),
                    interactive=False,
                    wrap=True,
                    elem_id="worklist",
                )
            with gr.Accordion("Threshold-tuning session", open=False):
                tuning_source = gr.Textbox(
                    label=f"Worklist: a folder of images (X_mask.png beside an image is its ground truth), "
                    f"a prepared split, '{DATABASE}', or '{PACS_SOURCE}' and a patient name, ID or accession"
                    " number (the PACS's image series)",
                    info=f"Server folders under: {', '.join(map(str, folder_roots))}."
                    if folder_roots
                    else f"No server folders are offered: an administrator lists them in {ROOTS_ENV}.",
                    elem_id="tuning-source",
                )
                tuning_start = gr.Button("Start a session with the method picked", elem_id="tuning-start")
            with gr.Accordion(f"PACS: {app.pacs.url}" if app.pacs else "PACS", open=False, visible=bool(app.pacs)):
                pacs_text = gr.Textbox(
                    label="Patient name, patient ID or accession number (empty: all)", elem_id="pacs-text"
                )
                pacs_search = gr.Button("Search studies", elem_id="pacs-search")
                pacs_studies = gr.Dataframe(
                    headers=PACS_HEADERS, interactive=False, elem_id="pacs-studies", label="Click a study"
                )
                pacs_study = gr.State("")
                pacs_series = gr.Dropdown([], label="Series of the study", elem_id="pacs-series")
                pacs_open = gr.Button("Open the series", elem_id="pacs-open")
        gr.Markdown(f"**Anomascope** — anomaly map review. {SIGNED_IN if login else SINGLE_USER}", elem_id="mode")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=560):
                message = gr.Markdown(
                    "Open an image (" + SUPPORTED + ") from the panel on the left, pick a trained method and press "
                    "**Run**.",
                    elem_id="message",
                )
                gr.HTML(
                    html_template=VIEWER_HTML,
                    css_template=VIEWER_CSS,
                    head=niivue_script_tags() + PAGE_STYLE,
                    js_on_load="window.anomascope.mount(element);",
                    elem_id="viewer",
                )
            with gr.Column(scale=1, min_width=320, elem_id="workbench"):
                # Until a case is open, the method offered is the best for colour photos, what most readers
                # open first; opening a case picks the method trained on images nearest it (Catalogue.choice_for).
                first_choice = catalogue.best_choice(lambda label: catalogue.takes(label, 3)) or catalogue.best_choice()
                method = gr.Dropdown(
                    list(catalogue.choices),
                    label="Method (trained bundle or training-free reference)",
                    value=first_choice,
                    elem_id="method",
                )
                run = gr.Button("Run", variant="primary", elem_id="run")
                score = gr.Markdown("", elem_id="score")
                with gr.Column(visible=False, elem_id="tuning-bar") as tuning_bar:
                    tuning_progress = gr.Markdown("", elem_id="tuning-progress")
                    with gr.Row():
                        tuning_previous = gr.Button("◀ Previous (Alt+←)", size="sm", elem_id="tuning-previous")
                        tuning_next = gr.Button("Next ▶ (Alt+→)", size="sm", elem_id="tuning-next")
                warning = gr.Markdown("", visible=False, elem_id="warning")
                acknowledge = gr.Checkbox(label="I have read the warning above", visible=False, elem_id="acknowledge")
                reader = gr.Textbox(
                    label="Reader (signed in)" if login else "Reader", elem_id="reader", interactive=not login
                )
                with gr.Row():
                    label = gr.Textbox(label="Label", placeholder="e.g. lesion, artefact", min_width=120)
                    note = gr.Textbox(label="Note", min_width=120)
                save = gr.Button("Save annotation (the mask on screen)", variant="primary", elem_id="save")
                save_status = gr.Markdown("", elem_id="save-status")
                pacs_send = gr.Button(
                    "Send the saved annotation to the PACS (Segmentation and Parametric Map)",
                    visible=bool(app.pacs),
                    elem_id="pacs-send",
                )
                mask_source = gr.Markdown("", elem_id="mask-source")
                versions = gr.Dropdown(
                    [], label="Saved versions of this case's annotation", visible=False, elem_id="versions"
                )
                compare = gr.Dropdown(
                    [], label="Compare with a saved version (magenta outline)", visible=False, elem_id="compare"
                )
                with gr.Accordion("About this method", open=True):
                    method_info = gr.Markdown(method_text(app, first_choice), elem_id="method-info")
                with gr.Accordion("Compare two methods side by side", open=False):
                    second_method = gr.Dropdown(
                        list(catalogue.choices),
                        label="Second method (shown right of the first)",
                        elem_id="second-method",
                    )
                    second_run = gr.Button("Run it beside the first", elem_id="second-run")
                    second_swap = gr.Button("Correct and save the second method's mask instead", elem_id="second-swap")
                    second_close = gr.Button("Close the second pane", elem_id="second-close")
        with gr.Tabs():
            with gr.Tab("Tuning summary"):
                with gr.Row():
                    criterion = gr.Textbox(
                        value="dice",
                        label="Criterion: dice (max mean Dice), sensitivity=S or fpr=F (on normal cases)",
                        elem_id="criterion",
                    )
                    summarise = gr.Button("Summarise the session", elem_id="summarise")
                summary_text = gr.Markdown("", elem_id="summary")
                readers_plot = gr.Plot(label="Against the readers' saved masks", elem_id="readers-plot")
                truth_plot = gr.Plot(label="Against ground truth", visible=False, elem_id="truth-plot")
                agreement = gr.Dataframe(
                    headers=AGREEMENT_HEADERS,
                    label="Readers against each other (latest masks of every tuning session with this method)",
                    interactive=False,
                    elem_id="agreement",
                )
                with gr.Row():
                    preset_name = gr.Textbox(label="Site threshold name", elem_id="preset-name")
                    save_preset = gr.Button("Save the proposed site threshold", elem_id="save-preset")
                preset_status = gr.Markdown("", elem_id="preset-status")
            with gr.Tab("History"):
                history = gr.Dataframe(headers=HISTORY_HEADERS, interactive=False, elem_id="history")
            with gr.Tab("Export"):
                with gr.Row():
                    export_buttons = {
                        fmt: gr.Button(f"Export {fmt.upper()}", elem_id=f"export-{fmt}") for fmt in FORMATS
                    }
                download = gr.File(label="Download", interactive=False)
        if catalogue.unavailable:
            gr.Markdown(
                "**Bundles that could not be loaded:**\n"
                + "\n".join(f"- `{k}`: {v}" for k, v in catalogue.unavailable.items())
            )

        screen = Screen(
            session,
            scene,
            message,
            score,
            warning,
            acknowledge,
            mask_source,
            versions,
            compare,
            comparison,
            history,
            worklist,
            save_status,
        )
        opening = Opening(screen, method, method_info, open_panel)
        bar = TuningBar(tuning, tuning_progress, tuning_bar)
        tab = SummaryTab(summary_state, summary_text, readers_plot, truth_plot, agreement)
        view_outputs = screen.outputs()

        open_outputs = opening.outputs()
        upload.change(bind(on_upload, app, login, opening), [upload, reader, session, method], open_outputs).then(
            None, scene, None, js=SHOW_SCENE
        )
        folder.change(bind(on_folder, app, login, opening), [folder, reader, session, method], open_outputs).then(
            None, scene, None, js=SHOW_SCENE
        )
        worklist.select(bind(on_worklist, app, opening), [session, method], open_outputs).then(
            None, scene, None, js=SHOW_SCENE
        )
        pacs_found = bind(on_pacs_search, app, message, pacs_studies, pacs_series, pacs_study)
        pacs_search.click(pacs_found, pacs_text, [pacs_studies, pacs_series, pacs_study, message])
        pacs_text.submit(pacs_found, pacs_text, [pacs_studies, pacs_series, pacs_study, message])
        pacs_studies.select(
            bind(on_pacs_study, app, message, pacs_study, pacs_series), None, [pacs_study, pacs_series, message]
        )
        pacs_open.click(
            bind(on_pacs_open, app, login, opening),
            [pacs_study, pacs_series, reader, session, method],
            open_outputs,
        ).then(None, scene, None, js=SHOW_SCENE)
        pacs_send.click(bind(on_pacs_send, app, login, save_status, message), [session, reader], [save_status, message])

        run.click(bind(on_run, app, login, screen), [session, method, reader], view_outputs).then(
            None, scene, None, js=SHOW_SCENE
        )
        method.change(bind(on_method, app, screen, method_info), [session, method], [*view_outputs, method_info]).then(
            None, scene, None, js=SHOW_SCENE
        )
        versions.input(bind(on_version, app, screen), [session, versions], view_outputs).then(
            None, scene, None, js=SHOW_SCENE
        )
        compare.input(bind(on_compare, app, message, comparison), [session, compare], [message, comparison]).then(
            None, comparison, None, js=SHOW_COMPARISON
        )

        second_outputs = [session, second_scene, message, history]
        second_run.click(
            bind(on_second_run, app, login, screen, second_scene), [session, second_method, reader], second_outputs
        ).then(None, second_scene, None, js=SHOW_SECOND)
        second_swap.click(None, None, panes, js=READ_PANES).then(
            bind(on_swap, app, screen), [session, panes], view_outputs
        ).then(None, scene, None, js=SHOW_SCENE)
        second_close.click(bind(on_second_close, app, session, second_scene), session, [session, second_scene]).then(
            None, second_scene, None, js=SHOW_SECOND
        )

        preview = bind(on_preview, tuning_service)
        tuning_outputs = [*view_outputs, tuning, tuning_progress]
        tuning_start.click(
            bind(on_tuning_start, app, tuning_service, login, screen, open_panel, bar),
            [tuning_source, method, reader, session],
            [*tuning_outputs, tuning_bar, open_panel],
        ).then(None, scene, None, js=SHOW_SCENE).then(preview, [tuning, session], upcoming).then(
            None, upcoming, None, js=PREFETCH
        )
        # Next puts the case loaded ahead on screen at once; the server's step follows and confirms it.
        tuning_next.click(None, None, None, js=ADVANCE)
        for button, delta in ((tuning_previous, -1), (tuning_next, +1)):
            button.click(
                bind(on_step, app, tuning_service, login, screen, bar, delta), [tuning, reader, session], tuning_outputs
            ).then(None, scene, None, js=SHOW_SCENE).then(preview, [tuning, session], upcoming).then(
                None, upcoming, None, js=PREFETCH
            )

        summarise.click(bind(on_summarise, tuning_service, tab), [tuning, criterion], tab.outputs())
        save_preset.click(
            bind(on_save_preset, app, tuning_service, login, preset_status, method_info),
            [tuning, summary_state, preset_name, reader],
            [preset_status, method_info],
        )

        # The mask is read from the viewer at the moment of the click, then saved as it was.
        save.click(None, None, payload, js=READ_MASK).then(
            bind(on_save, app, tuning_service, login, screen),
            [session, payload, reader, label, note, acknowledge, tuning],
            [session, save_status, message, history, worklist, mask_source, versions, compare],
        )

        for fmt, button in export_buttons.items():
            button.click(bind(run_export, app, download, message, fmt), None, [download, message])

        demo.load(None, None, None, js=TUNING_KEYS)
        if login:
            demo.load(signed_in, None, reader)
    return demo
