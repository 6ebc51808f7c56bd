"""Parsing XML from outside without its dangerous features.

A document type declaration can define entities that expand a small file into
gigabytes ("billion laughs") or pull in files from this machine or the network
(external entities). Clinical XML (C-CDA) never needs one, so any declaration
is refused outright, before anything it declares is used.
"""

from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat


class UnsafeXml(Exception):
    """The XML declares a document type or entities."""


class BadXml(Exception):
    """The bytes are not well-formed XML."""


def parse(data: bytes) -> Element:
    """The root element, with names in ElementTree's '{namespace}name' form."""
    builder = TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True

    def refuse(*_: object) -> None:
        raise UnsafeXml

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = lambda tag, attributes: builder.start(
        _name(tag), {_name(key): value for key, value in attributes.items()}
    )
    parser.EndElementHandler = lambda tag: builder.end(_name(tag))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise BadXml(str(exc)) from exc
    return builder.close()


def _name(name: str) -> str:
    # expat writes "namespace}name"; ElementTree's form is "{namespace}name".
    return "{" + name if "}" in name else name
