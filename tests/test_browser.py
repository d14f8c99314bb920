"""The chapters in JupyterLab in a real (headless) browser, as a teacher opens a fresh clone.

A fresh clone opens every notebook UNTRUSTED: JupyterLab then shows each output's text/plain
form instead of widgets, so stored stand-ins must be truthful. Per chapter this test
  1. opens a fresh, untrusted copy and checks that no output misleads (no "0%|" progress
     bar of a finished job, no "run this notebook in Jupyter" while the reader is in it,
     no "Error displaying widget" / "model not found");
  2. for a chapter with an explorer: runs it in quick mode up to its first explorer (the
     cells above it, then that cell), changes one control and checks that the output below
     it changed;
  3. saves (only this session's outputs), shuts the kernel down, reopens: the widgets come
     back from the saved state (the course's lab settings, binder/jupyter, turn JupyterLab's
     saveState on);
and fails on console errors caused by the course's outputs.

Needs Debian's Chromium (``apt-get install -y chromium``; ``SSLEDU_CHROMIUM`` names another
binary) and the ``playwright`` package; skips without them. Run it alone:
``pytest tests/test_browser.py -m browser``. ``SSLEDU_BROWSER_CHAPTERS=02,03`` picks
chapters; screenshots of failures go to ``SSLEDU_BROWSER_ARTIFACTS`` (default: pytest's tmp_path).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COURSE_CONFIG = ROOT / "binder" / "jupyter"  # the course's own lab settings (saveState)
CHROMIUM = os.environ.get("SSLEDU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
# What a reader must never see in a chapter's outputs, and why.
MISLEADING = {
    "0%|": "a stored tqdm widget bar shows 0% for a finished job",
    "run this notebook in Jupyter": "the reader is in Jupyter; the stand-in must say what to do",
    "Error displaying widget": "a widget whose state was not saved with the notebook",
    "model not found": "a widget whose state was not saved with the notebook",
}
# Console errors that come from our outputs (widgets, renderers), not from JupyterLab being
# offline (extension manager, fonts, language servers).
COURSE_ERROR = re.compile(r"widget|model not found|ssledu|explorer|render|sanitiz", re.I)
RUN_TIMEOUT_S = 420  # one chapter up to its first explorer, quick mode, slow shared CPU
CHAPTERS = sorted(ROOT.glob("chapters/[0-9][0-9]_*.ipynb"))


def _selected(paths):
    wanted = os.environ.get("SSLEDU_BROWSER_CHAPTERS", "").strip()
    if not wanted:
        return paths
    prefixes = [w.strip() for w in wanted.split(",") if w.strip()]
    return [p for p in paths if any(p.name.startswith(w) for w in prefixes)]


def _first_explorer(path: Path) -> int | None:
    """Index of the first cell that makes an explorer, or None."""
    cells = json.loads(path.read_text())["cells"]
    return next(
        (i for i, c in enumerate(cells) if c["cell_type"] == "code" and "_explorer(" in "".join(c["source"])),
        None,
    )


# --- the course's settings (no browser needed) -----------------------------------------


def test_course_lab_settings_save_widget_state(monkeypatch, tmp_path):
    """JupyterLab reads saveState=true from binder/jupyter (README, Binder postBuild)."""
    from jupyterlab_server.settings_utils import _get_overrides

    plugin = "@jupyter-widgets/jupyterlab-manager:plugin"
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(tmp_path))  # nothing of the course's
    assert _get_overrides(str(tmp_path))[0].get(plugin, {}).get("saveState") is not True
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(COURSE_CONFIG))
    overrides, error = _get_overrides(str(tmp_path))
    assert error == "" and overrides[plugin]["saveState"] is True
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "cp binder/jupyter/labconfig/default_setting_overrides.json" in post
    assert "etc/jupyter/labconfig" in post  # where JupyterLab looks inside the environment
    assert "JUPYTER_CONFIG_PATH=binder/jupyter jupyter lab" in (ROOT / "README.md").read_text()


# --- JupyterLab in Chromium -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set SSLEDU_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is missing: pip install -e '.[dev]'")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, chromium):
    """A JupyterLab server on 127.0.0.1 over a fresh, untrusted copy of chapters/."""
    base = tmp_path_factory.mktemp("lab")
    root, home = base / "root", base / "home"
    root.mkdir()
    for path in CHAPTERS:  # copied, never trusted: the server's signature store starts empty
        shutil.copy(path, root / path.name)
    test_config = home / "config-path" / "labconfig"
    test_config.mkdir(parents=True)
    # Render every cell (no virtual scrolling) so that the DOM holds all outputs.
    (test_config / "default_setting_overrides.json").write_text(
        json.dumps({
            "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
            "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
        })
    )
    token, port = secrets.token_hex(16), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "MPLBACKEND"))}
    env.update(
        SSLEDU_QUICK="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "ws"),
        JUPYTER_CONFIG_PATH=os.pathsep.join([str(COURSE_CONFIG), str(test_config.parent)]),
    )
    log = open(base / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
         "--LabApp.expose_app_in_browser=True", "--NotebookNotary.db_file=:memory:",
         "--ServerApp.port_retries=0", *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{(base / 'server.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within 90 s:\n{(base / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"url": url, "token": token, "root": root, "log": base / "server.log"}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def artifacts(tmp_path):
    where = os.environ.get("SSLEDU_BROWSER_ARTIFACTS")
    folder = Path(where) if where else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Notebook:
    """One chapter open in a browser tab, driven through JupyterLab's own commands."""

    def __init__(self, context, lab, name):
        self.lab, self.name = lab, name
        self.page = context.new_page()
        self.errors = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self):
        self.page.goto(f"{self.lab['url']}/lab/tree/{self.name}?reset&token={self.lab['token']}")
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
        # the kernel starts with the notebook; outputs are rendered by then
        self.page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
            " return k && k.status === 'idle'; }",
            timeout=90_000,
        )
        self.page.wait_for_timeout(1500)  # widget views render asynchronously

    def output_text(self, through: int | None = None) -> str:
        """The text of the outputs of every cell, or of cells 0..through."""
        return self.page.evaluate(
            """(through) => [...document.querySelectorAll('.jp-NotebookPanel .jp-Cell')]
                .slice(0, through === null ? undefined : through + 1)
                .flatMap(cell => [...cell.querySelectorAll('.jp-OutputArea-output')])
                .map(e => e.textContent).join('\\n')""",
            through,
        )

    def clear_outputs_after(self, index: int):
        self.page.evaluate(
            """(index) => window.jupyterapp.shell.currentWidget.content.widgets.forEach((cell, i) => {
                if (i > index && cell.model.type === 'code') cell.model.outputs.clear();
            })""",
            index,
        )

    def trust(self):
        """What a teacher who ran the chapter has: every output trusted (signed on save)."""
        self.command("notebook:trust", wait=False)
        self.page.click(".jp-Dialog .jp-mod-accept", timeout=30_000)  # "Trust this notebook?"

    def command(self, name, wait=True):
        """Run a JupyterLab command; ``wait=False`` returns before it finishes (a run)."""
        js = f"window.jupyterapp.commands.execute({name!r})"
        self.page.evaluate(f"async () => {{ await {js}; }}" if wait else f"() => {{ {js}; }}")

    def run_through(self, index: int):
        """Run cells 0..index (a chapter up to its first explorer) and wait until idle."""
        self.page.evaluate(f"() => {{ window.jupyterapp.shell.currentWidget.content.activeCellIndex = {index}; }}")
        self.command("notebook:run-all-above", wait=False)
        self.command("notebook:run-cell", wait=False)
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-InputPrompt')].some(e => e.textContent.includes('*'))",
            timeout=30_000,
        )
        self.page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " const k = w.sessionContext.session && w.sessionContext.session.kernel;"
            " const busy = [...document.querySelectorAll('.jp-InputPrompt')]"
            "   .some(e => e.textContent.includes('*'));"
            " return k && k.status === 'idle' && !busy; }",
            timeout=RUN_TIMEOUT_S * 1000,
            polling=1000,
        )

    def save(self):
        """Save now. On a busy machine a save that takes over 0.5 s makes JupyterLab ask
        "File Changed" (jupyterlab#7743, the disk time races the client's): keep ours."""
        self.page.evaluate(
            "() => { window.__ssleduSaved = false;"
            " window.jupyterapp.shell.currentWidget.context.save().then(() => { window.__ssleduSaved = true; }); }"
        )
        deadline = time.monotonic() + 60
        while not self.page.evaluate("() => window.__ssleduSaved"):
            overwrite = self.page.locator(".jp-Dialog .jp-mod-accept")
            if overwrite.count():
                overwrite.first.click()
            if time.monotonic() > deadline:
                raise TimeoutError(f"saving {self.name} did not finish within 60 s")
            self.page.wait_for_timeout(250)

    def close_and_shutdown(self):
        """Save, stop the kernel and close the tab, as at the end of a lesson."""
        self.save()
        self.command("notebook:close-and-shutdown", wait=False)
        self.page.click(".jp-Dialog .jp-mod-accept", timeout=30_000)  # "Shut down the notebook?"
        self.page.wait_for_selector(".jp-NotebookPanel", state="detached", timeout=30_000)

    def errors_in_outputs(self, through: int) -> list[str]:
        """Tracebacks in the outputs of cells 0..through."""
        return self.page.evaluate(
            """(through) => [...document.querySelectorAll('.jp-NotebookPanel .jp-Cell')].slice(0, through + 1)
                .flatMap(cell => [...cell.querySelectorAll("[data-mime-type='application/vnd.jupyter.error']")])
                .map(e => e.textContent)""",
            through,
        )

    def explorer_result(self, index=0) -> str:
        """The HTML of the outputs below the index-th explorer's controls (its results)."""
        return self.page.evaluate(
            """(index) => {
                const box = document.querySelectorAll('.ssledu-explorer')[index];
                const area = box.closest('.jp-OutputArea');
                return [...area.querySelectorAll(':scope > .jp-OutputArea-child')]
                    .filter(child => !child.contains(box)).map(child => child.innerHTML).join('\\n');
            }""",
            index,
        )

    def change_explorer(self, index=0) -> str:
        """Move the explorer's first slider one step (keyboard), or else edit its text box."""
        box = self.page.locator(".ssledu-explorer").nth(index)
        box.scroll_into_view_if_needed()
        handles = box.locator(".noUi-handle")
        if handles.count():
            handles.first.focus()
            handles.first.press("ArrowRight")
            return "slider"
        text = box.locator("input[type=text], textarea").first
        text.fill(text.input_value() + " .")
        text.press("Enter")
        return "text"

    def screenshot(self, folder: Path, label: str):
        path = folder / f"{Path(self.name).stem}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.mark.browser
@pytest.mark.timeout(RUN_TIMEOUT_S + 300)
@pytest.mark.parametrize("chapter", _selected(CHAPTERS), ids=lambda p: p.name[:2])
def test_chapter_in_jupyterlab(chapter, lab, chromium, artifacts):
    """Every stage runs and its problems are collected, so one run reports them all."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    nb = Notebook(context, lab, chapter.name)
    problems, stage = [], "open"
    started = time.monotonic()

    def misleading(when, through=None):
        shown = nb.output_text(through)
        found = {s: why for s, why in MISLEADING.items() if s in shown}
        if found:
            problems.append(f"{when}: misleading outputs {found}")
            nb.screenshot(artifacts, stage)

    try:
        nb.open()
        assert nb.output_text().strip(), "no output rendered: the chapter opened empty"
        misleading("opened untrusted")
        nb.page.wait_for_timeout(1000)  # JupyterLab rewrites metadata it disagrees with shortly after opening
        if nb.page.evaluate("() => window.jupyterapp.shell.currentWidget.context.model.dirty"):
            problems.append("opened untrusted: JupyterLab marks the chapter modified before any edit "
                            "(its kernelspec or metadata differ from what JupyterLab writes)")
            nb.screenshot(artifacts, stage)
        first = _first_explorer(chapter)
        if first is not None:
            stage = "run"
            nb.run_through(first)
            raised = nb.errors_in_outputs(first)
            assert not raised, f"the chapter raised in quick mode: {[e[-400:] for e in raised[:2]]}"
            stage = "explore"
            nb.page.wait_for_selector(".ssledu-explorer .widget-html", timeout=30_000)
            before = nb.explorer_result()
            how = nb.change_explorer()
            try:
                nb.page.wait_for_function(
                    """(before) => {
                        const box = document.querySelector('.ssledu-explorer');
                        const area = box.closest('.jp-OutputArea');
                        const now = [...area.querySelectorAll(':scope > .jp-OutputArea-child')]
                            .filter(child => !child.contains(box)).map(child => child.innerHTML).join('\\n');
                        return now !== before;
                    }""",
                    arg=before,
                    timeout=60_000,
                )
            except Exception:
                problems.append(f"changing the explorer's {how} did not change its output within 60 s")
                nb.screenshot(artifacts, stage)
            stage = "reopen"
            # The stored outputs below come from another kernel, whose widgets this one cannot
            # save: clear them, so that the saved chapter holds only what this session made.
            nb.clear_outputs_after(first)
            nb.trust()
            nb.close_and_shutdown()
            saved = json.loads((lab["root"] / chapter.name).read_text())
            state = saved["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
            views = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
                     for o in saved["cells"][first].get("outputs", [])
                     if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
            if not views or not all(v in state.get("state", {}) for v in views):
                problems.append("saved after a run without the explorer's widget state (saveState is off)")
            nb.open()
            misleading("reopened after a run", through=first)
            if nb.page.locator(".ssledu-explorer").count() == 0:
                problems.append("reopened after a run: the explorer's controls did not come back")
        course_errors = [e for e in nb.errors if COURSE_ERROR.search(e)]
        if course_errors:
            problems.append(f"console errors from the course's outputs: {course_errors[:5]}")
    except BaseException:
        shot = nb.screenshot(artifacts, stage)
        print(f"screenshot of the failure: {shot}; server log: {lab['log']}")
        print("console errors:", nb.errors[:10])
        raise
    finally:
        context.close()
        print(f"{chapter.name}: {time.monotonic() - started:.0f} s in the browser (last stage: {stage})")
    assert not problems, f"{chapter.name}:\n" + "\n".join(problems) + f"\n(screenshots in {artifacts})"
