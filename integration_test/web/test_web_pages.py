"""The jobs web page in a real headless Chromium, on a real ``segue serve``, with
jobs run by real demo workers: list, filter, page, open a job, watch it live,
see its progress charts; and stored texts are only ever shown as text."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from .conftest import Submission, WebStack, console_errors, screenshot, submit

HOSTILE = "<script>alert(1)</script><b>x</b>"
WAIT_S = 30


LISTED = """
return Array.from(document.querySelectorAll("tr.job")).map((row) => ({
  id: row.dataset.jobId,
  status: row.dataset.status,
  text: row.innerText,
  reference: row.querySelector("td.reference").textContent,
  elementsInReference: row.querySelector("td.reference").children.length,
  error: row.querySelector("td.error").textContent,
}));
"""


def rows(browser: webdriver.Chrome) -> dict[UUID, dict[str, Any]]:
    """The listed jobs by id, read at once (the first page may refresh any moment)."""
    listed: list[dict[str, Any]] = browser.execute_script(LISTED)
    return {UUID(row["id"]): row for row in listed}


def open_link(browser: webdriver.Chrome, path: str) -> None:
    """Click the link to ``path`` (found again if a refresh replaced it meanwhile)."""

    def click(driver: webdriver.Chrome) -> bool:
        driver.find_element(By.CSS_SELECTOR, f'a[href="{path}"]').click()
        return True

    WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException]).until(click)
    WebDriverWait(browser, WAIT_S).until(lambda b: b.current_url.endswith(path))


def no_alert(browser: webdriver.Chrome) -> bool:
    try:
        alert = browser.switch_to.alert
    except NoAlertPresentException:
        return True
    alert.dismiss()
    return False


def test_the_list_shows_jobs_and_filters_them_by_status_and_error_text(
    web_stack: WebStack, browser: webdriver.Chrome
) -> None:
    plans = submit(
        web_stack,
        Submission("energy_plan", {"step_seconds": 0.3, "region": "de"}, "plan-de"),
        Submission("energy_plan", {"step_seconds": 0.3, "fail_at": "optimise"}, "plan-broken"),
        Submission("quick_check", {"value": 3}, "check"),
    )
    done, failed, check = plans

    browser.get(web_stack.url("/jobs"))
    listed = rows(browser)
    assert set(plans) <= set(listed)
    assert listed[failed]["status"] == "failed"
    assert "failed on purpose" in listed[failed]["error"]

    browser.find_element(By.CSS_SELECTOR, "input[name=status][value=failed]").click()
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    WebDriverWait(browser, WAIT_S).until(lambda b: "status=failed" in b.current_url)
    filtered = rows(browser)
    assert failed in filtered
    assert {done, check}.isdisjoint(filtered)
    assert {row["status"] for row in filtered.values()} == {"failed"}

    browser.get(web_stack.url("/jobs?error=OPTIMISE%27+failed+on+purpose&workflow=energy_plan"))
    assert set(rows(browser)) == {failed}
    open_link(browser, f"/jobs/{failed}")
    error = browser.find_element(By.ID, "error").text
    assert "Error in step optimise" in error
    assert "DemoFailure: step 'optimise' failed on purpose" in error
    timeline = browser.find_element(By.CSS_SELECTOR, "section.timeline").text
    assert "failed: DemoFailure" in timeline
    assert "job failed: DemoFailure" in timeline

    browser.get(web_stack.url("/jobs?since=yesterday"))
    assert (
        "since: 'yesterday' is neither ISO 8601"
        in browser.find_element(By.CLASS_NAME, "problem").text
    )


def test_next_page_links_list_every_job_once(
    web_stack: WebStack, browser: webdriver.Chrome
) -> None:
    reference = "paged"
    submitted = submit(
        web_stack, *[Submission("quick_check", {"value": n}, reference) for n in range(5)]
    )

    browser.get(web_stack.url("/jobs?workflow=quick_check&limit=2"))
    seen: list[UUID] = []
    for _ in range(10):
        seen += [job for job, row in rows(browser).items() if row["reference"] == reference]
        following = browser.execute_script(
            "const next = document.querySelector('a.next');"
            " return next ? next.getAttribute('href') : null;"
        )
        if following is None:
            break
        open_link(browser, str(following))

    assert sorted(seen, key=str) == sorted(submitted, key=str)
    assert len(seen) == len(set(seen))


def test_a_job_page_follows_the_job_live_and_draws_a_progress_chart_per_step(
    web_stack: WebStack, browser: webdriver.Chrome
) -> None:
    (job_id,) = submit(
        web_stack,
        Submission("energy_plan", {"step_seconds": 2.5, "region": "nl"}, "watched live"),
        wait=False,
    )

    console_errors(browser)  # forget earlier pages' errors
    browser.get(web_stack.url(f"/jobs/{job_id}"))
    assert status_shown(browser) in {"queued", "running"}
    browser.execute_script("window.segueNotReloaded = true;")
    WebDriverWait(browser, 60).until(lambda b: status_shown(b) == "succeeded")
    WebDriverWait(browser, WAIT_S).until(lambda b: charts_drawn(b) == 4)

    assert browser.execute_script("return window.segueNotReloaded === true;")
    charts = browser.find_elements(By.CSS_SELECTOR, "figure[data-progress-chart]")
    assert [chart.get_attribute("data-step") for chart in charts] == [
        "prepare",
        "optimise",
        "simulate",
        "report",
    ]
    for chart in charts:
        assert int(chart.get_attribute("data-points") or 0) >= 3
        assert painted_pixels(browser, chart.find_element(By.TAG_NAME, "canvas")) > 100
    timeline = browser.find_element(By.CSS_SELECTOR, "section.timeline").text
    for told in ("submitted: energy_plan", "dispatched to queue simulate", "job succeeded"):
        assert told in timeline
    attempts = browser.find_elements(By.CSS_SELECTOR, "section.attempts tbody tr")
    assert len(attempts) == 4
    assert '"region": "nl"' in browser.find_element(By.ID, "params").text
    assert "cost_eur" in browser.find_element(By.ID, "outputs").text
    assert console_errors(browser) == []
    height = int(browser.execute_script("return document.body.scrollHeight;"))
    screenshot(browser, "web-job.png", height=min(height, 2200))


def status_shown(browser: webdriver.Chrome) -> str:
    """The job status the page shows now (read at once: htmx may swap it any moment)."""
    return str(browser.execute_script("return document.getElementById('status').textContent;"))


def charts_drawn(browser: webdriver.Chrome) -> int:
    """How many progress charts the page's script has drawn."""
    return len(browser.find_elements(By.CSS_SELECTOR, "figure[data-progress-chart][data-points]"))


def painted_pixels(browser: webdriver.Chrome, canvas: WebElement) -> int:
    """How many pixels of the canvas were drawn on."""
    script = (
        "const c = arguments[0]; const d = c.getContext('2d').getImageData(0, 0, c.width,"
        " c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) { if (d[i]) n++; }"
        " return n;"
    )
    return int(browser.execute_script(script, canvas))


def test_hostile_params_and_references_are_shown_as_text(
    web_stack: WebStack, browser: webdriver.Chrome
) -> None:
    (job_id,) = submit(
        web_stack,
        Submission("scenario_study", {"step_seconds": 0.2, "scenarios": [HOSTILE, "mid"]}, HOSTILE),
    )

    console_errors(browser)
    browser.get(web_stack.url(f"/jobs/{job_id}"))
    assert no_alert(browser)
    assert console_errors(browser) == []
    params = browser.find_element(By.ID, "params")
    assert HOSTILE.replace('"', '\\"') in params.text
    assert params.find_elements(By.XPATH, ".//*") == []
    reference = browser.find_element(By.ID, "reference")
    assert reference.text == HOSTILE
    assert reference.find_elements(By.XPATH, ".//*") == []
    assert browser.find_elements(By.XPATH, "//main//b") == []
    assert HOSTILE in browser.find_element(By.ID, "outputs").text

    browser.get(web_stack.url("/jobs?workflow=scenario_study"))
    assert no_alert(browser)
    row = rows(browser)[job_id]
    assert row["reference"] == HOSTILE
    assert row["elementsInReference"] == 0
    assert browser.find_elements(By.XPATH, "//main//b") == []
    browser.get(web_stack.url("/jobs?limit=12"))
    screenshot(browser, "web-jobs.png")  # the last test: every test's jobs are listed
