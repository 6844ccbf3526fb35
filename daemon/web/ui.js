// Page-wide messages and the role check, shared by every view.
export function notice(message) {
  const box = document.getElementById('notice');
  box.textContent = message;
  box.hidden = !message;
  if (message) setTimeout(() => { if (box.textContent === message) box.hidden = true; }, 10000);
}

export function canControl() {
  return document.body.dataset.role === 'control';
}
