"""Accessibility measured in the real page: WCAG 2.1 AA contrast of every text, a visible focus on everything the
keyboard reaches and the order it reaches it in, and axe-core's rules (labels, names, roles), which
axe-playwright-python carries so nothing is fetched. Used by the browser tests and by `python -m bench.screens`.
"""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page
from pydantic import BaseModel

# Each visible element that holds text of its own, its colour (faded by any translucent ancestor) and the colour
# behind it (the first ancestor with a background, each translucent one laid over the next), and the ratio WCAG 2.1
# defines. Text over an image cannot be
# measured so and is reported as such; disabled controls are exempt (WCAG 1.4.3).
_CONTRAST = """
() => {
  const rgba = (value) => {
    const parts = value.match(/[\\d.]+/g) || [0, 0, 0, 0];
    return parts.length === 3 ? [...parts.map(Number), 1] : parts.map(Number);
  };
  const over = (top, below) => {
    const alpha = top[3] + below[3] * (1 - top[3]);
    return [0, 1, 2].map(i => (top[i] * top[3] + below[i] * below[3] * (1 - top[3])) / (alpha || 1)).concat(alpha);
  };
  const background = (element) => {
    let colour = [0, 0, 0, 0];
    for (let node = element; node; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (style.backgroundImage !== "none" && !style.backgroundImage.startsWith("linear-gradient")) return null;
      colour = over(colour, rgba(style.backgroundColor));
      if (colour[3] >= 0.999) return colour;
    }
    return over(colour, [255, 255, 255, 1]);
  };
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map(v => v / 255).map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const found = [];
  for (const element of document.body.querySelectorAll("*")) {
    if (element.closest("svg, [aria-hidden=true], script, style")) continue;
    const own = [...element.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join("").trim();
    if (!own) continue;
    const box = element.getBoundingClientRect();
    const style = getComputedStyle(element);
    if (!box.width || !box.height || style.visibility !== "visible" || Number(style.opacity) < 0.1) continue;
    if (element.closest("button:disabled, input:disabled, textarea:disabled, [aria-disabled=true]")) continue;
    const behind = background(element);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    // A translucent ancestor fades its text into what lies behind it.
    let opacity = 1;
    for (let node = element; node; node = node.parentElement) opacity *= Number(getComputedStyle(node).opacity);
    const ink = rgba(style.color);
    const colour = behind ? over([...ink.slice(0, 3), ink[3] * opacity], behind) : null;
    const [light, dark] = behind ? [luminance(colour), luminance(behind)].sort((a, b) => b - a) : [0, 0];
    found.push({
      text: own.slice(0, 60),
      style: `${element.tagName.toLowerCase()}${element.className && typeof element.className === "string"
        ? "." + element.className.trim().split(/\\s+/).slice(0, 2).join(".") : ""}`,
      size, bold,
      ratio: behind ? (light + 0.05) / (dark + 0.05) : null,
      required: size >= 24 || (bold && size >= 18.66) ? 3 : 4.5,
    });
  }
  return found;
}
"""

# Whether the focused element, or the label around it, looks different from when it is not focused.
_FOCUS = """
() => {
  const element = document.activeElement;
  if (!element || element === document.body) return null;
  const looks = (node) => {
    const s = getComputedStyle(node);
    return [s.outlineStyle, s.outlineWidth, s.outlineColor, s.boxShadow, s.borderColor, s.backgroundColor].join("|");
  };
  const nodes = [element, element.closest("label")].filter(Boolean);
  const focused = nodes.map(looks);
  element.blur();
  const unfocused = nodes.map(looks);
  element.focus({preventScroll: true});
  const name = element.getAttribute("aria-label") || (element.labels && element.labels[0]
    && element.labels[0].innerText) || element.innerText || element.getAttribute("placeholder") || element.tagName;
  return {name: name.trim().replace(/\\s+/g, " ").slice(0, 60), tag: element.tagName.toLowerCase(),
          visible: focused.some((look, i) => look !== unfocused[i])};
}
"""


class TextContrast(BaseModel):
    text: str
    style: str  # tag and first classes: the text's style, for the report
    size: float  # px
    bold: bool
    ratio: float | None  # None: text over an image, not measurable this way
    required: float  # 4.5, or 3 for large text

    @property
    def passes(self) -> bool:
        return self.ratio is not None and self.ratio >= self.required - 0.005


class Focused(BaseModel):
    name: str
    tag: str
    visible: bool


# Measured once the page is still: a colour caught halfway through a transition is neither the one before nor after.
_SETTLE = """
() => Promise.all(document.getAnimations()
  .filter(animation => animation.effect && animation.effect.getComputedTiming().iterations !== Infinity)
  .map(animation => animation.finished.catch(() => null)))
"""


def text_contrast(page: Page) -> list[TextContrast]:
    page.evaluate(_SETTLE)
    return [TextContrast(**item) for item in page.evaluate(_CONTRAST)]


def tab_walk(page: Page, steps: int) -> list[Focused]:
    """What Tab reaches, in order, from the top of the page, and whether each shows its focus; once round, at most
    `steps`."""
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
    # A click on the page's top corner, where nothing is, moves the point that Tab starts from to the top.
    page.mouse.click(1, 1)
    reached: list[Focused] = []
    for _ in range(steps):
        page.keyboard.press("Tab")
        if (focused := page.evaluate(_FOCUS)) is None:
            continue
        if reached and Focused(**focused) == reached[0]:
            break  # back at the top
        reached.append(Focused(**focused))
    return reached


def serious_violations(page: Page) -> list[dict]:
    """axe-core's violations of impact serious or critical: each rule with its first offending element."""
    page.evaluate(_SETTLE)
    response = Axe().run(page).response
    return [
        {"rule": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]), "first": v["nodes"][0]["target"],
         "why": " ".join(v["nodes"][0].get("failureSummary", "").split())}
        for v in response["violations"] if v["impact"] in ("serious", "critical")
    ]
