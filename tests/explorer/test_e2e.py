"""End-to-end: the page in a real headless Chromium, driven with Playwright.

Playwright cannot download its own browser here, so these tests use the system
Chromium (Debian's ``chromium`` package, ``/usr/bin/chromium``; ``$GLASSNET_CHROMIUM``
overrides the path) and are skipped, saying so, where none is installed. Screenshots
of every view are saved under ``test-artifacts/explorer/``.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("GLASSNET_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "explorer"
VIEWPORT = {"width": 1400, "height": 900}

if not Path(CHROMIUM).is_file():
    pytest.skip(
        f"no Chromium found (looked for {CHROMIUM}): the explorer's browser tests are skipped; "
        "install Debian's 'chromium' package (apt-get install chromium) or set GLASSNET_CHROMIUM",
        allow_module_level=True,
    )
pytest.importorskip("fastapi", reason="the explorer needs the 'explorer' extra (fastapi, uvicorn)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package")


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def e2e_runs(runs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the runs directory: the tests update its running run."""
    root = tmp_path_factory.mktemp("e2e") / "runs"
    shutil.copytree(runs_dir, root)
    return root


@pytest.fixture(scope="module")
def server(e2e_runs: Path) -> Iterator[str]:
    from glassnet.explorer import create_app
    from glassnet.explorer._server import BackgroundServer

    srv = BackgroundServer(create_app(e2e_runs, cache_dir=e2e_runs.parent / "cache"))
    url = srv.start()
    try:
        yield url
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def context() -> Iterator[object]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="glassnet-chromium-")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            device_scale_factor=1,
        )
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(context: object) -> Iterator[object]:
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(15_000)
    yield pg
    pg.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def wait_text(page: object, selector: str, text: str, timeout: float = 15_000) -> None:
    sync_api.expect(page.locator(selector)).to_contain_text(text, timeout=timeout)


def hover_cell(page: object, selector: str, rows: int, cols: int, y: int, x: int) -> None:
    """Move the pointer to the centre of cell (y, x) of a rows×cols picture drawn on a canvas."""
    loc = page.locator(selector)
    loc.scroll_into_view_if_needed()
    box = loc.bounding_box()
    # whole CSS pixels: Chromium reports integer pointer coordinates
    page.mouse.move(
        round(box["x"] + (x + 0.5) * box["width"] / cols), round(box["y"] + (y + 0.5) * box["height"] / rows)
    )


def no_error_banner(page: object) -> None:
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()


# ----------------------------------------------------------------------------- kernels


def test_kernels_view(page: object, server: str) -> None:
    from glassnet.explorer.app import SAMPLES_DIR
    from glassnet.kernels import apply_kernel

    page.goto(server + "#kernels")
    wait_text(page, "#k-out-caption", "256×256")
    no_error_banner(page)
    # a named kernel, stride 2: the size arithmetic is filled in
    page.select_option("#k-kernel", "box_blur")
    wait_text(page, "#k-kernel-info", "Σ weights = 1")
    page.fill("#k-stride", "2")
    page.dispatch_event("#k-stride", "change")
    wait_text(page, "#k-arith", "(256 − 3 + 2·1)/2 + 1 = ⌊255/2⌋ + 1 = 127 + 1 = 128")
    wait_text(page, "#k-out-caption", "128×128")
    # hover an output pixel: window, kernel, products and their sum
    hover_cell(page, "#k-output", 128, 128, 20, 30)
    wait_text(page, "#k-pixel-title", "(row 20, column 30)")
    wait_text(page, "#k-pixel-title", "starts at input (39, 59)")
    grey = np.asarray(Image.open(SAMPLES_DIR / "astronaut.png").convert("L"), dtype=np.float64)
    expected = apply_kernel(grey, "box_blur", stride=2, padding=1)[20, 30]
    shown = page.locator("#k-pixel .result b").first.inner_text()
    assert float(shown) == pytest.approx(expected, abs=1e-3)
    assert page.locator("#k-pixel table.mat").count() == 3
    # upload an image
    ramp = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (40, 1)))  # 64×40
    page.set_input_files("#k-upload", files=[{"name": "ramp.png", "mimeType": "image/png", "buffer": png_bytes(ramp)}])
    wait_text(page, "#k-image-label", "uploaded: ramp.png (64×40")
    wait_text(page, "#k-in-caption", "64×40")
    wait_text(page, "#k-out-caption", "32×20")
    # type a 5×5 kernel
    page.click("#k-size button[data-value='5']")
    assert page.locator("#k-grid input").count() == 25
    page.fill("#k-grid input >> nth=0", "1/9")
    page.wait_for_selector("#k-output[data-kernel^='[[0.1111111111111111,0,0,0,0]']")
    wait_text(page, "#k-arith", "(64 − 5 + 2·2)/2 + 1")
    no_error_banner(page)
    # an upload that is not an image: a clear message, no traceback
    page.set_input_files("#k-upload", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    wait_text(page, "#error", "not a readable image")
    assert "Traceback" not in page.locator("#error").inner_text()
    # the screenshot: the astronaut through the top Sobel kernel, one pixel explained
    page.click("#k-samples button[data-sample='astronaut']")
    page.select_option("#k-kernel", "top_sobel")
    page.fill("#k-stride", "1")
    page.dispatch_event("#k-stride", "change")
    page.click("#k-pad-same")
    wait_text(page, "#k-out-caption", "256×256")
    wait_text(page, "#k-kernel-info", "Σ weights = 0")
    page.evaluate("window.scrollTo(0, 0)")
    hover_cell(page, "#k-output", 256, 256, 64, 122)
    wait_text(page, "#k-pixel-title", "(row 64, column 122)")
    no_error_banner(page)
    page.screenshot(path=str(ARTIFACTS / "kernels.png"), full_page=True)


# ----------------------------------------------------------------------------- architecture


def test_architecture_view(page: object, server: str) -> None:
    page.goto(server + "#architecture")
    wait_text(page, "#a-totals", "61,706")
    assert page.locator("#a-table tbody tr").count() == 12
    page.select_option("#a-model", "ckpt:lenet5-shapes/best.safetensors")
    wait_text(page, "#a-note", "lenet5-shapes/best.safetensors")
    page.select_option("#a-model", "zoo:alexnet")
    wait_text(page, "#a-totals", "62,378,344")
    assert page.locator("#a-table tbody tr").count() == 24
    wait_text(page, "#a-table tbody tr >> nth=0", "96×55×55")
    page.fill("#a-shape", "3,1,1")
    page.dispatch_event("#a-shape", "change")
    wait_text(page, "#error", "larger than the padded input")
    page.fill("#a-shape", "")
    page.dispatch_event("#a-shape", "change")
    sync_api.expect(page.locator("#error")).to_be_hidden()
    wait_text(page, "#a-totals", "62,378,344")
    page.locator("#a-shape").blur()
    page.hover("#a-table tbody tr >> nth=4")
    assert "hl" in (page.locator("#a-table tbody tr >> nth=4").get_attribute("class") or "")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "architecture.png"), full_page=False)


# ----------------------------------------------------------------------------- activations


def test_activations_view(page: object, server: str) -> None:
    page.goto(server + "#activations")
    wait_text(page, "#x-meta", "lenet5")
    wait_text(page, "#x-input-caption", "test image 0")
    sync_api.expect(page.locator("#x-preds .pred:not(.head)")).to_have_count(5)  # waits for the render
    # load another checkpoint
    page.select_option("#x-checkpoint", "lenet5-shapes/last.safetensors")
    wait_text(page, "#x-meta", "epoch 5")
    sync_api.expect(page.locator("#x-checkpoint")).to_have_value("lenet5-shapes/last.safetensors")
    # pick another test image: the model names its class
    thumb = page.locator("#x-tests button[data-index='4']")
    cls = thumb.get_attribute("title").split(": ")[1]
    thumb.click()
    wait_text(page, "#x-input-caption", "test image 4")
    sync_api.expect(page.locator("#x-preds .pred.top .name")).to_have_text(cls)
    # every layer's feature maps, and the first layer's filters
    sync_api.expect(page.locator("#x-layers .layer")).to_have_count(12)
    wait_text(page, "#x-layers .layer >> nth=0", "after convolution")
    wait_text(page, "#x-layers .layer >> nth=1", "after ReLU")
    wait_text(page, "#x-layers .layer >> nth=2", "after pooling")
    wait_text(page, "#x-filters-caption", "6×1×5×5")
    hover_cell(page, "#x-filters", 5, 6 * 5 + 5, 2, 2)
    wait_text(page, "#x-filter-detail", "filter 0")
    # hover a unit of the second convolution (16 maps of 10×10 on an 8×2 grid, 1-pixel gaps)
    layer = "#x-layers .layer >> nth=3 >> canvas"
    hover_cell(page, layer, 2 * 10 + 1, 8 * 10 + 7, 4, 6)
    wait_text(page, "#x-hover", "channel 0, row 4, column 6")
    wait_text(page, "#x-hover", "rows 6–19, columns 10–23 (14×14 window)")
    no_error_banner(page)
    # click it: how the unit was computed, channel by channel (lecture E2), as the API says
    page.mouse.down()
    page.mouse.up()
    sync_api.expect(page.locator("#x-unit-card")).to_be_visible()
    sync_api.expect(page.locator("#x-unit .unit-channel")).to_have_count(6)
    wait_text(page, "#x-unit-title", "layer 3 (Conv2d), channel 0, row 4, column 6")
    assert page.locator("#x-unit .unit-channel >> nth=0 >> table.mat").count() == 2  # window, kernel
    token = page.evaluate("X.result.token")
    q = "layer=3&c=0&y=4&x=6&explain=true"
    comp = page.request.get(server + f"api/activations/{token}/unit?{q}").json()["computation"]
    assert comp["total"] == pytest.approx(comp["recorded"], abs=1e-5)
    wait_text(page, "#x-unit-value", js_fmt(comp["total"], 6))
    wait_text(page, "#x-unit-relu", js_fmt(comp["relu"]["value"], 6))
    wait_text(page, "#x-unit-total", f"Σ over 6 input channels{js_fmt(comp['channel_sum'], 6)}")
    # draw on the canvas
    page.click("#x-source button[data-value='draw']")
    box = page.locator("#x-draw").bounding_box()
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, box["width"] * 0.3
    page.mouse.move(cx + r, cy)
    page.mouse.down()
    for t in np.linspace(0, 2 * np.pi, 40):
        page.mouse.move(cx + r * np.cos(t), cy + r * np.sin(t))
    page.mouse.up()
    wait_text(page, "#x-input-caption", "drawing")
    assert page.locator("#x-preds .pred.top .name").inner_text() in ("ring", "circle")
    # upload an image
    page.click("#x-source button[data-value='upload']")
    img = Image.new("L", (90, 90), 0)
    ImageDraw.Draw(img).rectangle((25, 25, 65, 65), fill=255)
    page.set_input_files("#x-upload", files=[{"name": "square.png", "mimeType": "image/png", "buffer": png_bytes(img)}])
    wait_text(page, "#x-input-caption", "square.png")
    wait_text(page, "#x-upload-label", "90×90")
    no_error_banner(page)
    # the screenshot: a test image, one unit's receptive field outlined
    page.click("#x-source button[data-value='test']")
    page.locator("#x-tests button[data-index='1']").click()
    wait_text(page, "#x-input-caption", "test image 1")
    page.evaluate("window.scrollTo(0, 0)")
    hover_cell(page, "#x-layers .layer >> nth=0 >> canvas", 28, 6 * 28 + 5, 14, 14)
    wait_text(page, "#x-hover", "5×5 window")
    page.mouse.down()
    page.mouse.up()
    wait_text(page, "#x-unit-title", "layer 0 (Conv2d), channel 0, row 14, column 14")
    sync_api.expect(page.locator("#x-unit .unit-channel")).to_have_count(1)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "activations.png"), full_page=False)


# ----------------------------------------------------------------------------- training


def test_training_view_updates_live(page: object, server: str, e2e_runs: Path, helpers) -> None:
    page.goto(server + "#training")
    wait_text(page, "#t-runs", "tinyvgg-live")
    assert page.locator("#t-runs .run").count() == 3
    wait_text(page, "#t-table", "3/10")
    assert page.locator("#t-runs .badge.running").count() == 1
    live = e2e_runs / "tinyvgg-live"
    helpers.write_history(live, helpers.make_history("running", 4, planned=10, speed=0.7, seed=3, model="tinyvgg"))
    wait_text(page, "#t-table", "4/10", timeout=10_000)
    helpers.write_history(live, helpers.make_history("running", 6, planned=10, speed=0.7, seed=3, model="tinyvgg"))
    wait_text(page, "#t-table", "6/10", timeout=10_000)
    # a finished run's curves beside the running one; hover shows the numbers of an epoch
    box = page.locator("#t-loss").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    wait_text(page, "#tooltip", "epoch")
    wait_text(page, "#tooltip", "lenet5-shapes: train")
    page.mouse.move(0, 0)
    no_error_banner(page)
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 700})
    page.screenshot(path=str(ARTIFACTS / "training.png"), full_page=False)
    helpers.write_history(live, helpers.make_history("finished", 10, planned=10, speed=0.7, seed=3, model="tinyvgg"))
    sync_api.expect(page.locator("#t-runs .badge.finished")).to_have_count(3, timeout=10_000)


# ----------------------------------------------------------------------------- why this prediction


def js_fmt(v: float, digits: int = 4) -> str:
    """The page's fmt(): up to ``digits`` decimals without trailing zeros, exponent for tiny or huge values."""
    if float(v).is_integer() and abs(v) < 1e7:
        return str(int(v))
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
        m, e = f"{v:.2e}".split("e")
        return f"{m}e{int(e):+d}"
    return repr(float(f"{v:.{digits}f}")).removesuffix(".0")


def test_why_view(page: object, server: str, e2e_runs: Path) -> None:
    from glassnet import visualize as V
    from glassnet.checkpoint import load_checkpoint
    from glassnet.data import load_dataset

    page.goto(server + "#why")
    wait_text(page, "#w-meta", "lenet5")
    # all five maps arrive, each with its numbers
    sync_api.expect(page.locator("#w-results .method:not(.pending)")).to_have_count(5, timeout=30_000)
    wait_text(page, "#w-target-line", "(the predicted class)")
    wait_text(page, "#w-results [data-method=gradcam]", "16 channels of 5×5")
    wait_text(page, "#w-results [data-method=occlusion]", "169 = 13×13, 4×4, stride 2")
    assert page.locator("#w-results [data-method=gradcam] img").first.evaluate("i => i.naturalWidth") == 28
    # the Grad-CAM maximum shown is glassnet.visualize's for this checkpoint and image
    ckpt = load_checkpoint(e2e_runs / "lenet5-lr0.01" / "last.safetensors")
    model = ckpt.build_model().eval()
    norm = ckpt.meta.normalization
    x = (load_dataset("shapes", "test").images[:1].astype(np.float32) / 255 - norm["mean"][0]) / norm["std"][0]
    t = int(V.predicted(model, x)[0])
    cam = V.grad_cam(model, x, t, "5")[0]
    wait_text(page, "#w-results [data-method=gradcam]", f"max{js_fmt(float(cam.max()))} at cell")
    # hover the overlay: the Grad-CAM value of the cell under the pointer
    hover_cell(page, "#w-results [data-method=gradcam] img >> nth=0", 28, 28, 2, 2)
    wait_text(page, "#w-results [data-method=gradcam] .readout", f"cell (0, 0): Grad-CAM {js_fmt(float(cam[0, 0]))}")
    # explain another class: click the second prediction
    second = page.locator("#w-preds .pred.clickable >> nth=1")
    name = second.locator(".name").inner_text()
    second.click()
    wait_text(page, "#w-target-line", "(the model predicts")
    wait_text(page, "#w-target-name", name)
    # another layer for Grad-CAM
    page.select_option("#w-layer", "3")
    wait_text(page, "#w-results [data-method=gradcam]", "16 channels of 10×10")
    no_error_banner(page)
    # a confusion-matrix cell opens its test images, each with Grad-CAM for the true and predicted class
    wait_text(page, "#w-run-meta", "accuracy 91.1%")
    cell = page.locator("#w-matrix-table td[data-t='0'][data-p='1']")
    count = cell.inner_text()
    cell.click()
    wait_text(page, "#w-cell-count", count, timeout=30_000)
    sync_api.expect(page.locator("#w-cell .cell-item")).to_have_count(min(8, int(count)))
    first = page.locator("#w-cell .cell-item >> nth=0")
    assert first.locator("figure img").count() == 2
    wait_text(page, "#w-cell .cell-item >> nth=0", "true: circle")
    wait_text(page, "#w-cell .cell-item >> nth=0", "predicted: square")
    index = first.get_attribute("data-index")
    first.locator("button").click()
    wait_text(page, "#w-input-caption", f"test image {index}")
    wait_text(page, "#w-target-line", "square")
    # the pretrained EfficientNet-Lite0 on the bundled cat photo
    page.select_option("#w-model", "pre:efficientnet_lite0")
    wait_text(page, "#w-input-caption", "224×224, sample chelsea", timeout=30_000)
    wait_text(page, "#w-target-line", "cat")
    sync_api.expect(page.locator("#w-results .method:not(.pending)")).to_have_count(5, timeout=60_000)
    wait_text(page, "#w-results [data-method=gradcam]", "1280 channels of 7×7")
    no_error_banner(page)
    page.evaluate("window.scrollTo(0, 0)")
    page.mouse.move(0, 0)
    page.screenshot(path=str(ARTIFACTS / "why.png"), full_page=False)


# ----------------------------------------------------------------------------- backprop, step by step


def test_backprop_view(page: object, server: str, e2e_runs: Path) -> None:
    import glassnet.functional as F
    from glassnet.checkpoint import load_checkpoint
    from glassnet.data import load_dataset

    page.goto(server + "#backprop")
    wait_text(page, "#b-meta", "computed in float64")
    # every layer, in the order the gradient reaches it, then the input
    sync_api.expect(page.locator("#b-layers .bp-layer")).to_have_count(13, timeout=30_000)
    order = page.locator("#b-layers .bp-layer").evaluate_all("els => els.map(e => e.dataset.layer)")
    assert order == [str(k) for k in range(11, -1, -1)] + ["input"]
    wait_text(page, "#b-summary", "0 failed")
    assert page.locator("#b-layers .badge.fail").count() == 0
    assert page.locator("#b-layers .badge.pass").count() >= 10
    # the loss shown is the cross-entropy of test image 0 with its label, in float64
    ckpt = load_checkpoint(e2e_runs / "lenet5-lr0.01" / "last.safetensors")
    model = ckpt.build_model().to(np.float64).eval()
    test = load_dataset("shapes", "test")
    norm = ckpt.meta.normalization
    x = ((test.images[:1].astype(np.float64) / 255 - norm["mean"][0]) / norm["std"][0]).astype(np.float32)
    loss = float(F.cross_entropy(model(x.astype(np.float64)), test.labels[:1]).data)
    wait_text(page, "#b-loss-value", js_fmt(loss, 6))
    # step through: back to the loss, then one layer at a time
    page.click("#b-first")
    wait_text(page, "#b-step", "step 0 of 13: the loss")
    assert page.locator("#b-layers .bp-layer.waiting").count() == 13
    page.click("#b-next")
    wait_text(page, "#b-step", "step 1 of 13: 11 (Linear)")
    page.click("#b-next")
    page.click("#b-next")
    wait_text(page, "#b-step", "step 3 of 13: 9 (Linear)")
    assert page.locator("#b-layers .bp-layer.current").get_attribute("data-layer") == "9"
    assert page.locator("#b-layers .bp-layer.waiting").count() == 10
    wait_text(page, "#b-layers [data-layer='9']", "glassnet.functional.linear.linear_backward")
    wait_text(page, "#b-layers [data-layer='9']", "9.weight")
    no_error_banner(page)
    page.evaluate("window.scrollTo(0, 0)")
    page.mouse.move(0, 0)
    page.screenshot(path=str(ARTIFACTS / "backprop.png"), full_page=False)
    # another image: the whole backward pass again
    page.locator("#b-tests button[data-index='5']").click()
    wait_text(page, "#b-input-caption", "test image 5")
    sync_api.expect(page.locator("#b-layers .bp-layer")).to_have_count(13)
    no_error_banner(page)


# ----------------------------------------------------------------------------- playground


def test_playground_view(page: object, server: str, e2e_runs: Path) -> None:
    page.goto(server + "#playground")
    wait_text(page, "#p-params", "26,698")  # 80 + 1,168 + 25,120 + 330
    wait_text(page, "#p-macs", "307,648")
    assert page.locator("#p-layers .play-layer").count() == 5
    wait_text(page, "#p-table", "16×7×7")
    # a convolution after the dense layer cannot work: explained, and its row outlined
    page.click("#view-playground [data-add='conv']")
    wait_text(page, "#p-error", "layer 6 (conv 8@3×3")
    wait_text(page, "#p-explain", "a vector of 32 values")
    sync_api.expect(page.locator("#p-layers .play-layer.bad")).to_have_attribute("data-i", "5")
    wait_text(page, "#p-params", "–")
    page.click("#p-layers [data-i='5'] button[title='remove']")
    sync_api.expect(page.locator("#p-error")).to_be_hidden()
    wait_text(page, "#p-params", "26,698")
    # fewer channels in the first convolution: 4·(9 + 1) + 16·(4·9 + 1) + 25,120 + 330
    page.fill("#p-layers [data-i='0'] [data-field='channels']", "4")
    wait_text(page, "#p-params", "26,082")
    wait_text(page, "#p-code", "nn.Conv2d(1, 4, 3, padding=1)")
    wait_text(page, "#p-code", "nn.Conv2d(4, 16, 3, padding=1)")
    # a kernel larger than its input: the trace's error names the layer, the arithmetic says why
    page.fill("#p-layers [data-i='2'] [data-field='kernel']", "19")
    wait_text(page, "#p-error", "layer 3 (conv 16@19×19")
    wait_text(page, "#p-error", "kernel 19×19 is larger than the padded input 16×16")
    wait_text(page, "#p-explain", "(14 − 19 + 2·1)/1 + 1")
    wait_text(page, "#p-error", "glassnet.trace said: layer '3' (Conv2d)")
    assert page.locator("#p-train").is_disabled()
    page.fill("#p-layers [data-i='2'] [data-field='kernel']", "3")
    wait_text(page, "#p-params", "26,082")
    no_error_banner(page)
    # train on the server: the curves fill in and the first layer's filters change
    page.fill("#p-steps", "60")
    page.click("#p-train")
    wait_text(page, "#p-train-status", "done: step 60 of 60", timeout=60_000)
    sync_api.expect(page.locator("#p-filters")).to_have_attribute("data-step", "60")
    wait_text(page, "#p-evals", "60: ")
    wait_text(page, "#p-last", "step 60: loss")
    no_error_banner(page)
    # one epoch (⌈12,000 / 256⌉ = 47 steps), watching test image 2's first feature maps change
    page.click("#p-watch-thumbs button[data-index='2']")
    wait_text(page, "#p-watch-label", "#2")
    page.fill("#p-epochs", "1")
    page.fill("#p-batch", "256")
    page.click("#p-train")
    wait_text(page, "#p-train-status", "done: step 47 of 47", timeout=60_000)
    sync_api.expect(page.locator("#p-filters")).to_have_attribute("data-step", "47")
    sync_api.expect(page.locator("#p-watch")).to_have_attribute("data-step", "47")
    wait_text(page, "#p-watch-caption", "test image #2")
    wait_text(page, "#p-watch-caption", "4×28×28")  # 4 channels since the edit above
    sync_api.expect(page.locator("#p-watch-epochs .watch-epoch")).to_have_count(1)
    before = page.locator("#p-watch0").evaluate("c => c.toDataURL()")
    after = page.locator("#p-watch").evaluate("c => c.toDataURL()")
    assert before != after  # the feature maps changed over the epoch
    # resume the same model for 5 more steps: its step count goes on
    page.fill("#p-epochs", "")
    page.fill("#p-steps", "5")
    page.click("#p-resume")
    wait_text(page, "#p-train-status", "done: step 5 of 5", timeout=60_000)
    wait_text(page, "#p-train-status", "the model's step 52")
    wait_text(page, "#p-last", "step 52: loss")
    # save it into the runs directory: a run the other views open
    page.fill("#p-save-name", "pg-e2e")
    page.click("#p-save")
    wait_text(page, "#p-saved", "saved pg-e2e/last.safetensors (step 52, 1 epoch(s))")
    assert (e2e_runs / "pg-e2e" / "last.safetensors").is_file() and (e2e_runs / "pg-e2e" / "history.json").is_file()
    no_error_banner(page)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)  # down to the watched image
    page.goto(server + "#activations")
    wait_text(page, "#x-meta", "lenet5")
    page.select_option("#x-checkpoint", "pg-e2e/last.safetensors")
    wait_text(page, "#x-meta", "sequential")
    # conv + ReLU, pool, conv + ReLU, pool, flatten, dense + ReLU, output
    sync_api.expect(page.locator("#x-layers .layer")).to_have_count(10)
    no_error_banner(page)


# ----------------------------------------------------------------------------- what a channel sees


def test_channels_view(page: object, server: str) -> None:
    page.goto(server + "#channels")
    wait_text(page, "#c-meta", "lenet5")
    # the first convolution by default: one image per channel, computed in the background
    wait_text(page, "#c-status", "6 of 6 channels of layer 0", timeout=60_000)
    sync_api.expect(page.locator("#c-grid .channel img")).to_have_count(6)
    # another layer, fewer steps
    page.fill("#c-steps", "48")
    page.select_option("#c-layer", "3")
    wait_text(page, "#c-status", "16 of 16 channels of layer 3", timeout=60_000)
    wait_text(page, "#c-status", "48 steps at 28×28")
    sync_api.expect(page.locator("#c-grid .channel img")).to_have_count(16)
    # asked again, every channel comes from the cache
    page.click("#c-go")
    wait_text(page, "#c-status", "16 from the cache")
    # a channel's top test images, with the numbers the API gives
    page.click("#c-grid .channel[data-channel='5']")
    wait_text(page, "#c-top-title", "test images that excite channel 5 most", timeout=30_000)
    sync_api.expect(page.locator("#c-top figure")).to_have_count(12)
    q = "checkpoint=lenet5-lr0.01/last.safetensors&layer=3&channel=5&k=12"
    top = page.request.get(server + "api/channels/top?" + q).json()
    first = top["items"][0]
    assert page.locator("#c-top figure >> nth=0").get_attribute("data-index") == str(first["index"])
    wait_text(page, "#c-top figure >> nth=0", f"{first['class']} {js_fmt(first['mean'], 3)}")
    wait_text(page, "#c-detail-title", "Layer 3, channel 5")
    no_error_banner(page)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "channels.png"), full_page=False)
