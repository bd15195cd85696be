"""Fields the keyboard types into, and leaving them with Escape.

While a field (an Input, a TextArea) has the focus, letters and digits are text: `3` typed there is
part of a value, not "go to Runs". Escape always leaves the field first (`leave_field`); the screen's
own Escape (back, close) comes with the next press. Selects, switches and checkboxes count as fields
too, so Escape from any control of a form lands in the same place: no control focused, the screen's
and the app's keys live again.
"""

from __future__ import annotations

import sys

from textual.case import camel_to_snake
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Input, Select

# Fields whose modules Textual's app does not import itself: only the places that show one import it
# (TextArea, with its documents and syntax highlighting, costs a tenth of the start-up), and a widget
# can only be one of them once that module is loaded, so they are looked up, not imported, here:
# class name -> the module `from textual.widgets import NAME` loads it from.
LATER_FIELDS = {
    name: f"textual.widgets._{camel_to_snake(name)}" for name in ("TextArea", "Switch", "Checkbox")
}


def field_types() -> tuple[type[Widget], ...]:
    """The widget classes that count as fields: Input and Select, and those of `LATER_FIELDS` loaded."""
    types: list[type[Widget]] = [Input, Select]
    for name, module_name in LATER_FIELDS.items():
        module = sys.modules.get(module_name)
        if module is not None:
            types.append(getattr(module, name))
    return tuple(types)


def focused_field(screen: Screen) -> Widget | None:
    """The field that has the keyboard on `screen`, if one has (an open Select's list does not count:
    its Escape closes the list)."""
    focused = screen.focused
    if focused is not None and isinstance(focused, field_types()):
        return focused
    return None


def in_field(screen: Screen) -> bool:
    """A field of a place (not of a dialog, whose Escape cancels it) has the keyboard."""
    return not isinstance(screen, ModalScreen) and focused_field(screen) is not None


def typing_in(screen: Screen) -> bool:
    """A field that takes letters (an Input, a TextArea) has the keyboard: `q` is text there, so the
    footer shows ctrl+q for quitting."""
    field = focused_field(screen) if not isinstance(screen, ModalScreen) else None
    return field is not None and field.check_consume_key("q", "q")


def leave_field(screen: Screen, to: Widget | None = None) -> bool:
    """Move the keyboard off the focused field (onto `to`, else onto nothing); whether there was one."""
    if focused_field(screen) is None:
        return False
    screen.set_focus(to if to is not None and to.focusable else None)
    return True
