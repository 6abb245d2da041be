"""The web view in a real browser: headless Chromium driven by selenium (chromium-driver).

Open the page, send mail with smtplib, watch the session appear and its ladder grow, open the
message and its MIME tree, follow its life to the IMAP session that fetched it; hostile mail
runs nothing; in classroom mode a student sees only their own.  Set MAILTRACE_WEB_SHOTS to a
folder to keep a screenshot of each view.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import smtplib
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from web_support import XSS, make_web_lab, send_mail  # noqa: E402

WAIT = 10  # seconds at most for a condition (never a fixed sleep)


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    if not driver:
        pytest.skip("chromedriver is not installed (apt-get install chromium-driver)")
    return browser, driver


@pytest.fixture
def browser():
    binary, driver_path = _chromium()
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mailtrace-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver, name: str) -> None:
    folder = os.environ.get("MAILTRACE_WEB_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def wait(driver, condition, timeout: float = WAIT):
    try:
        return WebDriverWait(driver, timeout).until(lambda d: condition(d))
    except Exception:
        shot(driver, "failed")
        raise


def ready(driver, url: str) -> None:
    driver.get(url)
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready") == "1")


def rows(driver, table: str) -> list:
    return driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")


def ladder_text(driver) -> str:
    return driver.find_element(By.ID, "ladder").text.upper()  # smtplib writes its verbs in lower case


def test_live_session_ladder_message_mime_and_life(lab_factory, browser):
    lab = make_web_lab(lab_factory)
    ready(browser, lab.web_view.url)
    assert rows(browser, "sessions-table") == []

    # a session appears as it starts, and its ladder grows line by line
    smtp = smtplib.SMTP("127.0.0.1", lab.port("smtp"), timeout=10)
    smtp.ehlo("student.example")
    row = wait(browser, lambda d: rows(d, "sessions-table"))[0]
    row.click()
    wait(browser, lambda d: "EHLO STUDENT.EXAMPLE" in ladder_text(d))
    assert "MAIL FROM:<ALICE" not in ladder_text(browser)  # not yet sent
    smtp.mail("alice@lab.test")
    wait(browser, lambda d: "MAIL FROM:<ALICE@LAB.TEST>" in ladder_text(d))
    smtp.rcpt("bob@lab.test")
    smtp.data(b"From: alice@lab.test\r\nTo: bob@lab.test\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
              b"SG9sYSwgY2Fmw6kh\r\n")
    smtp.quit()
    wait(browser, lambda d: "221" in ladder_text(d))
    assert browser.find_element(By.ID, "dl-pcap").get_attribute("href").endswith("/download/pcap?lang=en")
    shot(browser, "1-sessions-ladder")

    imap = imaplib.IMAP4("127.0.0.1", lab.port("imap"))
    imap.login("bob", "bob")
    imap.select("INBOX")
    imap.fetch("1", "(BODY[])")
    imap.logout()
    wait(browser, lambda d: len(rows(d, "sessions-table")) == 2)

    # the message: headers explained, MIME tree encoded and decoded, its life
    browser.find_element(By.ID, "tab-messages").click()
    box = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#mailboxes li[data-user=bob][data-mailbox=INBOX]"))
    box[0].click()
    wait(browser, lambda d: rows(d, "messages-table"))[0].click()
    wait(browser, lambda d: d.find_element(By.ID, "message-subject").text == "Café")
    headers = wait(browser, lambda d: d.find_element(By.ID, "headers")).text
    assert "Received:" in headers and "RFC 5321 §4.4" in headers
    shot(browser, "2-message-headers")
    browser.find_element(By.ID, "mt-mime").click()
    encoded = browser.find_element(By.CSS_SELECTOR, "#mime-tree pre.encoded").text
    decoded = browser.find_element(By.CSS_SELECTOR, "#mime-tree pre.decoded").text
    assert encoded.strip() == "SG9sYSwgY2Fmw6kh" and decoded.strip() == "Hola, café!"
    shot(browser, "3-message-mime")
    browser.find_element(By.ID, "mt-raw").click()
    wait(browser, lambda d: "Content-Transfer-Encoding: base64" in d.find_element(By.ID, "raw-source").text)
    browser.find_element(By.ID, "mt-life").click()
    life = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#life a"))
    assert [a.text.split()[-1] for a in life] == ["(SMTP)", "(IMAP)"]
    shot(browser, "4-message-life")
    life[1].click()  # follow the life to the IMAP session that fetched it
    wait(browser, lambda d: "BODY[]" in ladder_text(d) and "LOGIN" in ladder_text(d))
    shot(browser, "5-imap-session-from-life")

    # the same page in Spanish, filtered to the sessions of one protocol
    ready(browser, lab.web_view.url + "?lang=es#/sessions")
    assert browser.find_element(By.ID, "tab-sessions").text == "Sesiones"
    browser.find_element(By.CSS_SELECTOR, "#f-protocol option[value=imap]").click()
    wait(browser, lambda d: [r.get_attribute("data-id")[:4] for r in rows(d, "sessions-table")] == ["imap"])
    rows(browser, "sessions-table")[0].click()
    wait(browser, lambda d: "LOGIN" in ladder_text(d) and "(autenticado)" in d.find_element(By.ID, "ladder").text)
    shot(browser, "8-spanish-filtered")


def test_hostile_mail_runs_nothing(lab_factory, browser):
    lab = make_web_lab(lab_factory)
    send_mail(lab.port("smtp"), f'"Eve {XSS}" <eve@lab.test>', "bob@lab.test", "Hi " + XSS, text="plain " + XSS,
              html=f"<p>hello <b>bob</b></p>{XSS}<svg onload='window.__pwned=3'></svg>"
                   "<a href='javascript:window.__pwned=4'>click</a><iframe src='javascript:parent.__pwned=5'></iframe>")
    lab.wait_closed(1)
    ready(browser, lab.web_view.url)
    wait(browser, lambda d: rows(d, "sessions-table"))[0].click()
    wait(browser, lambda d: "DATA" in ladder_text(d))
    browser.get(lab.web_view.url + "#/message/bob/INBOX/1")
    wait(browser, lambda d: d.find_element(By.ID, "message-subject").text.startswith("Hi <script>"))
    for part in ("headers", "mime", "text", "raw", "life", "html"):
        browser.find_element(By.ID, f"mt-{part}").click()
    frame = wait(browser, lambda d: d.find_element(By.ID, "html-frame"))
    assert frame.get_attribute("sandbox") == ""
    shot(browser, "6-hostile-html-sandboxed")
    browser.switch_to.frame(frame)
    wait(browser, lambda d: "hello" in d.find_element(By.TAG_NAME, "body").text)
    assert browser.find_elements(By.CSS_SELECTOR, "script, iframe, svg, [onerror], [onload]") == []
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    browser.switch_to.default_content()
    for link in browser.find_elements(By.TAG_NAME, "a"):
        assert not (link.get_attribute("href") or "").startswith("javascript:")
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - no dialog was opened
    assert "<script>" in browser.find_element(By.ID, "message-subject").text  # shown as text, not run


def test_classroom_login_shows_a_student_only_their_own(lab_factory, browser):
    users = {"alice": "a-pw", "bob": "b-pw", "teacher": "t-pw"}
    lab = make_web_lab(lab_factory, admin="teacher", users=users)
    send_mail(lab.port("smtp"), "alice@lab.test", "alice@lab.test", "alice's own", login=("alice", "a-pw"))
    imap = imaplib.IMAP4("127.0.0.1", lab.port("imap"))
    imap.login("bob", "b-pw")
    imap.logout()
    lab.wait_closed(2)
    alice_session = next(e.session for e in lab.events if e.protocol == "smtp")

    browser.get(lab.web_view.url)
    wait(browser, lambda d: d.find_elements(By.ID, "login-button"))
    browser.find_element(By.ID, "user").send_keys("bob")
    browser.find_element(By.ID, "password").send_keys("wrong")
    browser.find_element(By.ID, "login-button").click()
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".error.failed").is_displayed())
    browser.find_element(By.ID, "user").send_keys("bob")
    browser.find_element(By.ID, "password").send_keys("b-pw")
    browser.find_element(By.ID, "login-button").click()
    wait(browser, lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    shown = [r.get_attribute("data-id") for r in wait(browser, lambda d: rows(d, "sessions-table"))]
    assert alice_session not in shown and all(s.startswith("imap") for s in shown)
    shot(browser, "7-classroom-student")
    browser.get(lab.web_view.url + "#/sessions/" + alice_session)
    wait(browser, lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    wait(browser, lambda d: "ALICE" not in ladder_text(d) and ladder_text(d) != "")
    assert "MAIL FROM:<ALICE" not in ladder_text(browser)  # not yet sent
    browser.get(lab.web_view.url + "#/messages")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#mailboxes li"))
    assert {li.get_attribute("data-user") for li in browser.find_elements(By.CSS_SELECTOR, "#mailboxes li")} == {"bob"}
    browser.get(lab.web_view.url + "#/message/alice/INBOX/1")
    wait(browser, lambda d: d.execute_script("return document.body.dataset.ready") == "1" or True)
    assert "alice's own" not in browser.find_element(By.TAG_NAME, "body").text
