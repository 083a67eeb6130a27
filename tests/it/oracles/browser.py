"""Headless Chromium from Debian's packages, driven by Selenium, as the browser tests use it
(report.py, status.py). The flags keep it off the network this machine does not reach."""

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def chromium(width, height):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ]:
        options.add_argument(flag)
    # What the page logs (errors such as a failed request), for get_log("browser").
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
