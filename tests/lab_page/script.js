// The lab's page script: draw white on black like MNIST, shrink the canvas to 28x28, predict.
let model;
const canvas = document.getElementById('canvas');
const ctx = canvas.getContext('2d');
const result = document.getElementById('result');

function clearCanvas() {
  ctx.fillStyle = 'black';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  result.innerText = '';
}

let drawing = false;
canvas.addEventListener('mousedown', (e) => {
  drawing = true;
  ctx.beginPath();
  ctx.moveTo(e.offsetX, e.offsetY);
});
canvas.addEventListener('mousemove', (e) => {
  if (!drawing) return;
  ctx.lineTo(e.offsetX, e.offsetY);
  ctx.strokeStyle = 'white';
  ctx.lineWidth = 20;
  ctx.lineCap = 'round';
  ctx.stroke();
});
canvas.addEventListener('mouseup', () => { drawing = false; });

function preprocess() {
  return tf.tidy(() => tf.browser.fromPixels(canvas, 1)
    .resizeBilinear([28, 28]).toFloat().div(255.0).reshape([1, 28, 28, 1]));
}

document.getElementById('predict').addEventListener('click', async () => {
  const input = preprocess();
  const prediction = model.predict(input);
  const digit = (await prediction.argMax(-1).data())[0];
  result.innerText = 'Prediction: ' + digit;
  input.dispose();
  prediction.dispose();
});
document.getElementById('clear').addEventListener('click', clearCanvas);

async function loadModel() {
  model = await tf.loadLayersModel('tensorflow/model.json');
  document.body.dataset.ready = 'true';
}

clearCanvas();
loadModel();
