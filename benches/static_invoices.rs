//! Static invoice store: store and serve operations per second and bytes on
//! disk per invoice, ours against ldk-node 0.7.1's `StaticInvoiceStore`, both
//! over `FilesystemStore` in a temporary directory on the same machine in the
//! same run.
//!
//! `cargo bench --bench static_invoices` (N recipients, one invoice each;
//! `STATIC_INVOICE_BENCH_N`, default 5000).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ldk_trampoline::static_invoices::fixtures::{invoice, message_path};
use ldk_trampoline::static_invoices::{StaticInvoicePolicy, StaticInvoices};
use lightning::util::logger::{Logger, Record};
use lightning::util::persist::KVStoreSync;
use lightning_persister::fs_store::FilesystemStore;

#[path = "common/disk.rs"]
mod disk;
use disk::disk_usage;

/// ldk-node 0.7.1's `src/payment/asynchronous/static_invoice_store.rs`
/// (Copyright its original authors, MIT OR Apache-2.0), which is
/// `pub(crate)`: its storage path, as is, without the async wrappers and the
/// rate limiter (whose 10,000-user cap would refuse most of a 100k run).
mod ldk_node_store {
	use std::sync::Arc;

	use bitcoin::hashes::sha256::Hash as Sha256;
	use bitcoin::hashes::Hash;
	use lightning::blinded_path::message::BlindedMessagePath;
	use lightning::offers::static_invoice::StaticInvoice;
	use lightning::util::persist::KVStoreSync;
	use lightning::util::ser::{BigSize, Readable, Writeable};

	const STATIC_INVOICE_STORE_PRIMARY_NAMESPACE: &str = "static_invoices";

	pub struct PersistedStaticInvoice {
		pub invoice: StaticInvoice,
		pub request_path: BlindedMessagePath,
	}

	// ldk-node uses `impl_writeable_tlv_based!` ((0, invoice), (2,
	// request_path)), whose expansion needs the `lightning-macros` crate; this
	// writes and reads the same bytes: a BigSize length, then the two TLVs.
	impl PersistedStaticInvoice {
		pub fn write(&self, out: &mut Vec<u8>) -> Result<(), lightning::io::Error> {
			let (invoice, path) = (self.invoice.encode(), self.request_path.encode());
			let mut fields = Vec::with_capacity(invoice.len() + path.len() + 8);
			for (t, v) in [(0u64, &invoice), (2, &path)] {
				BigSize(t).write(&mut fields)?;
				BigSize(v.len() as u64).write(&mut fields)?;
				fields.extend_from_slice(v);
			}
			BigSize(fields.len() as u64).write(out)?;
			out.extend_from_slice(&fields);
			Ok(())
		}

		pub fn read(r: &mut &[u8]) -> Result<Self, lightning::ln::msgs::DecodeError> {
			use lightning::ln::msgs::DecodeError;
			let _len: BigSize = Readable::read(r)?;
			let (mut invoice, mut request_path) = (None, None);
			while !r.is_empty() {
				let t: BigSize = Readable::read(r)?;
				let l: BigSize = Readable::read(r)?;
				let l = l.0 as usize;
				if r.len() < l {
					return Err(DecodeError::ShortRead);
				}
				let (value, rest) = r.split_at(l);
				*r = rest;
				match t.0 {
					0 => {
						invoice = Some(
							StaticInvoice::try_from(value.to_vec())
								.map_err(|_| DecodeError::InvalidValue)?,
						)
					},
					2 => request_path = Some(BlindedMessagePath::read(&mut &value[..])?),
					_ => {},
				}
			}
			Ok(Self {
				invoice: invoice.ok_or(DecodeError::InvalidValue)?,
				request_path: request_path.ok_or(DecodeError::InvalidValue)?,
			})
		}
	}

	pub struct StaticInvoiceStore {
		pub kv_store: Arc<dyn KVStoreSync + Send + Sync>,
	}

	impl StaticInvoiceStore {
		pub fn handle_static_invoice_requested(
			&self, recipient_id: &[u8], invoice_slot: u16,
		) -> Result<Option<(StaticInvoice, BlindedMessagePath)>, lightning::io::Error> {
			let (secondary_namespace, key) = Self::get_storage_location(invoice_slot, recipient_id);
			KVStoreSync::read(
				&*self.kv_store,
				STATIC_INVOICE_STORE_PRIMARY_NAMESPACE,
				&secondary_namespace,
				&key,
			)
			.and_then(|data| {
				PersistedStaticInvoice::read(&mut &*data)
					.map(|p| Some((p.invoice, p.request_path)))
					.map_err(|e| {
						lightning::io::Error::new(
							lightning::io::ErrorKind::InvalidData,
							format!("Failed to parse static invoice: {:?}", e),
						)
					})
			})
			.or_else(|e| {
				if e.kind() == lightning::io::ErrorKind::NotFound {
					Ok(None)
				} else {
					Err(e)
				}
			})
		}

		pub fn handle_persist_static_invoice(
			&self, invoice: StaticInvoice, invoice_request_path: BlindedMessagePath,
			invoice_slot: u16, recipient_id: Vec<u8>,
		) -> Result<(), lightning::io::Error> {
			let (secondary_namespace, key) =
				Self::get_storage_location(invoice_slot, &recipient_id);
			let persisted_invoice =
				PersistedStaticInvoice { invoice, request_path: invoice_request_path };
			let mut buf = Vec::new();
			persisted_invoice.write(&mut buf)?;
			KVStoreSync::write(
				&*self.kv_store,
				STATIC_INVOICE_STORE_PRIMARY_NAMESPACE,
				&secondary_namespace,
				&key,
				buf,
			)
		}

		fn get_storage_location(invoice_slot: u16, recipient_id: &[u8]) -> (String, String) {
			let hash = Sha256::hash(recipient_id).to_byte_array();
			let secondary_namespace: String = hash.iter().map(|b| format!("{b:02x}")).collect();
			let key = format!("{:05}", invoice_slot);
			(secondary_namespace, key)
		}
	}
}

struct NoLog;
impl Logger for NoLog {
	fn log(&self, _: Record) {}
}

struct Figures {
	store_per_s: f64,
	serve_per_s: f64,
	bytes_per_invoice: f64,
	allocated_per_invoice: f64,
}

fn report(name: &str, n: u64, f: &Figures) {
	println!(
		"{name:>8}: store {:>9.0} ops/s, serve {:>9.0} ops/s, {:>6.0} bytes/invoice ({:.0} allocated) at N={n}",
		f.store_per_s, f.serve_per_s, f.bytes_per_invoice, f.allocated_per_invoice
	);
}

fn id(i: u64) -> Vec<u8> {
	// 33 bytes, like a node id.
	let mut id = vec![2u8; 33];
	id[..8].copy_from_slice(&i.to_be_bytes());
	id
}

fn main() {
	let n: u64 =
		std::env::var("STATIC_INVOICE_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
	let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
	let inv = invoice(now, Duration::from_secs(14 * 86_400), 0);
	let path = message_path();

	// Ours.
	let dir = tempfile::tempdir().expect("tempdir");
	let kv: Arc<dyn KVStoreSync + Send + Sync> = Arc::new(FilesystemStore::new(dir.path().into()));
	let policy = StaticInvoicePolicy { max_invoices: n + 1, ..Default::default() };
	let ours = StaticInvoices::new(Arc::clone(&kv), policy, Arc::new(NoLog)).expect("store");
	let start = Instant::now();
	for i in 0..n {
		ours.persist(inv.clone(), path.clone(), 0, id(i), now).expect("stored");
	}
	let store_s = start.elapsed().as_secs_f64();
	let start = Instant::now();
	for i in 0..n {
		ours.lookup(&id(i), 0, b"", now).expect("served");
	}
	let serve_s = start.elapsed().as_secs_f64();
	let (bytes, allocated, _) = disk_usage(dir.path());
	let ours_figures = Figures {
		store_per_s: n as f64 / store_s,
		serve_per_s: n as f64 / serve_s,
		bytes_per_invoice: bytes as f64 / n as f64,
		allocated_per_invoice: allocated as f64 / n as f64,
	};
	let start = Instant::now();
	drop(ours);
	let reload = StaticInvoices::new(kv, policy, Arc::new(NoLog)).expect("reload");
	assert_eq!(reload.list().len() as u64, n);
	let reload_s = start.elapsed().as_secs_f64();

	// ldk-node 0.7.1's.
	let dir = tempfile::tempdir().expect("tempdir");
	let theirs = ldk_node_store::StaticInvoiceStore {
		kv_store: Arc::new(FilesystemStore::new(dir.path().into())),
	};
	let start = Instant::now();
	for i in 0..n {
		theirs.handle_persist_static_invoice(inv.clone(), path.clone(), 0, id(i)).expect("stored");
	}
	let store_s = start.elapsed().as_secs_f64();
	let start = Instant::now();
	for i in 0..n {
		theirs.handle_static_invoice_requested(&id(i), 0).expect("read").expect("served");
	}
	let serve_s = start.elapsed().as_secs_f64();
	let (bytes, allocated, _) = disk_usage(dir.path());
	let theirs_figures = Figures {
		store_per_s: n as f64 / store_s,
		serve_per_s: n as f64 / serve_s,
		bytes_per_invoice: bytes as f64 / n as f64,
		allocated_per_invoice: allocated as f64 / n as f64,
	};

	println!("static invoice store, N={n} recipients x 1 invoice ({} bytes), FilesystemStore", {
		use lightning::util::ser::Writeable;
		inv.serialized_length()
	});
	report("ours", n, &ours_figures);
	report("ldk-node", n, &theirs_figures);
	println!(
		"   ratio (ours/ldk-node): store {:.2}, serve {:.2}, bytes {:.2}, allocated {:.2}",
		ours_figures.store_per_s / theirs_figures.store_per_s,
		ours_figures.serve_per_s / theirs_figures.serve_per_s,
		ours_figures.bytes_per_invoice / theirs_figures.bytes_per_invoice,
		ours_figures.allocated_per_invoice / theirs_figures.allocated_per_invoice,
	);
	println!("    ours: reloading the index of {n} invoices took {reload_s:.2} s");
}
