// Click a column header of a table.sortable to sort by it; again to reverse. Numbers (data-sort)
// sort numerically, text alphabetically; empty cells ("–") always last. No dependencies.
document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("table.sortable")) {
    const headers = table.querySelectorAll("thead th");
    headers.forEach((th, col) => {
      th.addEventListener("click", () => {
        const asc = !th.classList.contains("asc");
        headers.forEach((h) => h.classList.remove("asc", "desc"));
        th.classList.add(asc ? "asc" : "desc");
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        const key = (row) => {
          const cell = row.cells[col];
          if (!cell) return null;
          if (cell.dataset.sort !== undefined) return Number(cell.dataset.sort);
          const text = cell.textContent.trim();
          return text === "–" ? null : text.toLowerCase();
        };
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          if (x === null) return 1;
          if (y === null) return -1;
          if (x < y) return asc ? -1 : 1;
          if (x > y) return asc ? 1 : -1;
          return 0;
        });
        rows.forEach((row) => body.appendChild(row));
      });
    });
  }
});
