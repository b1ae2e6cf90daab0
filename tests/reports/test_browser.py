"""The report in real headless Chromium: loads, no console errors, no network, sortable, no XSS."""

from __future__ import annotations

import os
from pathlib import Path

from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By

from tests.reports.browser import chromium, open_page
from tests.reports.conftest import EVIL



def test_report_in_headless_chromium(report, tmp_path):
    path, _ = report
    # Screenshots go to $LINPROBE_SCREENSHOTS when set (to look at them), else the test's tmp dir.
    shots = Path(os.environ.get("LINPROBE_SCREENSHOTS", tmp_path))
    with chromium() as driver:
        load = open_page(driver, path)
        rows = driver.find_elements(By.CSS_SELECTOR, "#leaderboard-table tbody tr")
        assert len(rows) == 4
        assert load.errors() == [], load.errors()
        assert load.requests and load.requests[0].startswith("file://")
        assert load.external_requests() == []
        # The XSS class name is shown as text and never ran.
        try:
            alert = driver.switch_to.alert
            raise AssertionError(f"a script ran and opened an alert: {alert.text!r}")
        except NoAlertPresentException:
            pass
        assert EVIL in driver.find_element(By.ID, "class-counts").text
        # Every embedded image decoded (naturalWidth > 0).
        broken = driver.execute_script(
            "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
        assert broken == 0

        shots.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(shots / "report-top.png"))
        driver.execute_script("document.getElementById('runs').scrollIntoView()")
        assert driver.save_screenshot(str(shots / "report-runs.png"))

        # Sorting: click "test" twice (descending after the first click, ascending after the second).
        driver.execute_script("window.scrollTo(0, 0)")
        header = driver.find_elements(By.CSS_SELECTOR, "#leaderboard-table th")[2]
        values = lambda: [float(td.get_attribute("data-sort")) for td in  # noqa: E731
                          driver.find_elements(By.CSS_SELECTOR, "#leaderboard-table tbody td:nth-child(3)")]
        header.click()
        assert values() == sorted(values())
        header.click()
        assert values() == sorted(values(), reverse=True)
        # Per-class tables sort numerically from the cell text (no data-sort attributes there).
        table = driver.find_element(By.CSS_SELECTOR, "details.run[open] .scroll table")
        driver.execute_script("arguments[0].scrollIntoView()", table)
        driver.execute_script("window.scrollBy(0, -120)")  # clear the sticky nav bar
        table.find_elements(By.CSS_SELECTOR, "th")[2].click()  # recall
        recall = [float(r.find_elements(By.TAG_NAME, "td")[2].text)
                  for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert len(recall) == 5 and recall == sorted(recall)
        assert open_page(driver, path).errors() == []
