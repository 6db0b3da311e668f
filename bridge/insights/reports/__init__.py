"""Human-readable reports: charts (matplotlib, rendered to inline SVG) and Jinja2 templates."""
