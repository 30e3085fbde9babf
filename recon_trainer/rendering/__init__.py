"""Rendering pieces shared by the novel-view-synthesis methods: rays, samplers, raymarchers."""
