"""Thin HTTP handlers: parse, call one service method, shape the answer."""
