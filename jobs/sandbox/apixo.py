"""Sandbox for apixo: not written yet."""

urlpatterns = []
