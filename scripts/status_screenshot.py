"""Make docs/status-page.png: `monitor demo` with a fault, through the browser tests' code.

Run by hand after changing the page:  python scripts/status_screenshot.py
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.browser import browser_page, screenshot  # noqa: E402
from tests.support.demo import running_demo  # noqa: E402

# Runs of the faulty probe before the picture, so the sparkline and the
# failures table have something to show.
SETTLE_SECONDS = 40


async def main(out: Path) -> None:
    async with running_demo() as demo:
        await asyncio.sleep(15)  # a few healthy runs first
        await demo.flip("backend-b", "503")
        await asyncio.sleep(SETTLE_SECONDS)
        async with browser_page(width=1280, height=900) as page:
            await page.goto(demo.base + "/")
            await page.wait_for_selector("#probes tr")
            await screenshot(page, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main(ROOT / "docs" / "status-page.png"))
